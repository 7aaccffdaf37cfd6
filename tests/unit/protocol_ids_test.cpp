#include <gtest/gtest.h>

#include <string>

#include "protocol/ids.hpp"

using otter::protocol::escape_invalid_utf8;
using otter::protocol::valid_hex;
using otter::protocol::valid_name;
using otter::protocol::valid_sha256_hex;
using otter::protocol::valid_utf8;

TEST(ids, payload_limit_is_16_kib) {
  EXPECT_EQ(otter::protocol::kMaxPayloadBytes, 16384u);
}

TEST(ids, valid_name_accepts_protocol_alphabet) {
  EXPECT_TRUE(valid_name("a"));
  EXPECT_TRUE(valid_name("esp32-devkitc"));
  EXPECT_TRUE(valid_name("Dev_01.site-3"));
  EXPECT_TRUE(valid_name("0123456789"));
  EXPECT_TRUE(valid_name(std::string(64, 'x')));
}

TEST(ids, valid_name_refuses_others) {
  EXPECT_FALSE(valid_name(""));
  EXPECT_FALSE(valid_name(std::string(65, 'x')));
  for (const std::string s :
       {"a b", "a/b", "a+b", "a#b", "a$", "a:b", "a*", "dev\xc3\xa9", "a\tb", "a\"b", "a\\b"})
    EXPECT_FALSE(valid_name(s)) << s;
  EXPECT_FALSE(valid_name(std::string("a\0b", 3)));
}

TEST(ids, valid_hex_bounds_and_alphabet) {
  EXPECT_TRUE(valid_hex("0123456789abcdef", 16, 16));
  EXPECT_TRUE(valid_hex("0123456789ABCDEF", 16, 16));
  EXPECT_FALSE(valid_hex("0123456789abcde", 16, 16));
  EXPECT_FALSE(valid_hex("0123456789abcdef0", 16, 16));
  EXPECT_FALSE(valid_hex("0123456789abcdeg", 16, 16));
  EXPECT_FALSE(valid_hex("0123456789abcde ", 16, 16));
  EXPECT_TRUE(valid_hex(std::string(64, 'f'), 16, 64));
  EXPECT_FALSE(valid_hex(std::string(65, 'f'), 16, 64));
  EXPECT_TRUE(valid_hex("", 0, 4));
  EXPECT_FALSE(valid_hex("", 1, 4));
}

TEST(ids, valid_sha256_hex_is_64_lowercase) {
  const std::string ok = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  EXPECT_TRUE(valid_sha256_hex(ok));
  std::string upper = ok;
  upper[0] = 'E';
  EXPECT_FALSE(valid_sha256_hex(upper));
  EXPECT_FALSE(valid_sha256_hex(ok.substr(1)));
  EXPECT_FALSE(valid_sha256_hex(ok + "0"));
  std::string bad = ok;
  bad[10] = 'g';
  EXPECT_FALSE(valid_sha256_hex(bad));
  EXPECT_FALSE(valid_sha256_hex(""));
}

TEST(ids, valid_utf8_accepts_well_formed) {
  EXPECT_TRUE(valid_utf8(""));
  EXPECT_TRUE(valid_utf8("plain ascii"));
  EXPECT_TRUE(valid_utf8(std::string("nul\0inside", 10)));
  EXPECT_TRUE(valid_utf8("\xc2\x80"));          // U+0080
  EXPECT_TRUE(valid_utf8("\xc3\xa9"));          // é
  EXPECT_TRUE(valid_utf8("\xdf\xbf"));          // U+07FF
  EXPECT_TRUE(valid_utf8("\xe0\xa0\x80"));      // U+0800
  EXPECT_TRUE(valid_utf8("\xe2\x82\xac"));      // €
  EXPECT_TRUE(valid_utf8("\xed\x9f\xbf"));      // U+D7FF, just below the surrogates
  EXPECT_TRUE(valid_utf8("\xee\x80\x80"));      // U+E000, just above
  EXPECT_TRUE(valid_utf8("\xef\xbf\xbf"));      // U+FFFF
  EXPECT_TRUE(valid_utf8("\xf0\x90\x80\x80"));  // U+10000
  EXPECT_TRUE(valid_utf8("\xf0\x9f\x98\x80"));  // 😀
  EXPECT_TRUE(valid_utf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF
  EXPECT_TRUE(valid_utf8("a\xc3\xa9z\xf0\x9f\x98\x80!"));
}

TEST(ids, valid_utf8_refuses_overlongs) {
  EXPECT_FALSE(valid_utf8("\xc0\x80"));  // U+0000 in two bytes
  EXPECT_FALSE(valid_utf8("\xc1\xbf"));
  EXPECT_FALSE(valid_utf8("\xe0\x80\x80"));
  EXPECT_FALSE(valid_utf8("\xe0\x9f\xbf"));
  EXPECT_FALSE(valid_utf8("\xf0\x80\x80\x80"));
  EXPECT_FALSE(valid_utf8("\xf0\x8f\xbf\xbf"));
}

TEST(ids, valid_utf8_refuses_surrogates_and_out_of_range) {
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));              // U+D800
  EXPECT_FALSE(valid_utf8("\xed\xbf\xbf"));              // U+DFFF
  EXPECT_FALSE(valid_utf8("\xed\xa0\xbd\xed\xb8\x80"));  // CESU-8 pair
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));          // U+110000
  EXPECT_FALSE(valid_utf8("\xf5\x80\x80\x80"));
  EXPECT_FALSE(valid_utf8("\xf8\x88\x80\x80\x80"));
  EXPECT_FALSE(valid_utf8("\xfe"));
  EXPECT_FALSE(valid_utf8("\xff"));
}

TEST(ids, valid_utf8_refuses_truncated_and_stray_bytes) {
  EXPECT_FALSE(valid_utf8("\xc3"));
  EXPECT_FALSE(valid_utf8("\xe2\x82"));
  EXPECT_FALSE(valid_utf8("\xf0\x9f\x98"));
  EXPECT_FALSE(valid_utf8("abc\xf0\x9f"));
  EXPECT_FALSE(valid_utf8("\x80"));  // lone continuation
  EXPECT_FALSE(valid_utf8("a\xbf"));
  EXPECT_FALSE(valid_utf8("\xc3\x28"));  // continuation missing
  EXPECT_FALSE(valid_utf8("\xe2\x28\xa1"));
  EXPECT_FALSE(valid_utf8("\xe2\x82\x28"));
  EXPECT_FALSE(valid_utf8("\xf0\x9f\x28\x80"));
  EXPECT_FALSE(valid_utf8("\xf0\x9f\x98\x28"));
}

TEST(ids, escape_invalid_utf8_keeps_characters_and_escapes_stray_bytes) {
  EXPECT_EQ(escape_invalid_utf8("plain é €"), "plain é €");
  EXPECT_EQ(escape_invalid_utf8("last read: '\xc3'"), "last read: '\\xC3'");
  EXPECT_EQ(escape_invalid_utf8("\xe2\x82"), "\\xE2\\x82");
  EXPECT_EQ(escape_invalid_utf8("\xed\xa0\x80ok"), "\\xED\\xA0\\x80ok");  // a surrogate
  EXPECT_EQ(escape_invalid_utf8(std::string_view("a\0b", 3)), std::string("a\0b", 3));
  EXPECT_TRUE(valid_utf8(escape_invalid_utf8("\xff\xfe\xc0\xaf\xf4\x90\x80\x80")));
}
