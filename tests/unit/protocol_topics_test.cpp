#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "protocol/topics.hpp"

using otter::protocol::topic_kind;
using otter::protocol::topics;
using otter::protocol::valid_topic_root;

TEST(topics, builders_follow_protocol_md) {
  const topics t("ota/v1");
  EXPECT_EQ(t.root(), "ota/v1");
  EXPECT_EQ(t.offer("d1"), "ota/v1/dev/d1/down/offer");
  EXPECT_EQ(t.error("d1"), "ota/v1/dev/d1/down/error");
  EXPECT_EQ(t.chunk("d1", "3a7bd3e2360a3d29", 0), "ota/v1/dev/d1/down/chunk/3a7bd3e2360a3d29/0");
  EXPECT_EQ(t.chunk("d1", "3a7bd3e2360a3d29", 18446744073709551615u),
            "ota/v1/dev/d1/down/chunk/3a7bd3e2360a3d29/18446744073709551615");
  EXPECT_EQ(t.admin_response("alice"), "ota/v1/admin/alice/res");
  EXPECT_EQ(t.event("check"), "ota/v1/events/check");
  EXPECT_EQ(t.service_state("otterd-1"), "ota/v1/service/otterd-1/state");
  EXPECT_EQ(t.metrics(), "ota/v1/service/metrics");
  EXPECT_EQ(t.device_up_filter(), "ota/v1/dev/+/up/+");
  EXPECT_EQ(t.admin_req_filter(), "ota/v1/admin/+/req");
  EXPECT_EQ(t.admin_upload_filter(), "ota/v1/admin/+/upload/+");
  EXPECT_EQ(t.device_check("d1"), "ota/v1/dev/d1/up/check");
  EXPECT_EQ(t.device_status("d1"), "ota/v1/dev/d1/up/status");
  EXPECT_EQ(t.device_chunk_request("d1"), "ota/v1/dev/d1/up/chunk");
  EXPECT_EQ(t.device_down_filter("d1"), "ota/v1/dev/d1/down/#");
  EXPECT_EQ(t.admin_request("alice"), "ota/v1/admin/alice/req");
  EXPECT_EQ(t.admin_upload("alice", "u-1"), "ota/v1/admin/alice/upload/u-1");
}

TEST(topics, parse_device_topics) {
  const topics t("ota/v1");
  const struct {
    const char* topic;
    topic_kind kind;
  } cases[] = {
      {"ota/v1/dev/dev-01/up/check", topic_kind::device_check},
      {"ota/v1/dev/dev-01/up/status", topic_kind::device_status},
      {"ota/v1/dev/dev-01/up/chunk", topic_kind::device_chunk},
      {"ota/v1/dev/dev-01/up/hello", topic_kind::device_unknown},
      {"ota/v1/dev/dev-01/up/Check", topic_kind::device_unknown},
      {"ota/v1/dev/dev-01/up/", topic_kind::device_unknown},
  };
  for (const auto& c : cases) {
    const auto p = t.parse(c.topic);
    ASSERT_TRUE(p.has_value()) << c.topic;
    EXPECT_EQ(p->kind, c.kind) << c.topic;
    EXPECT_EQ(p->subject, "dev-01") << c.topic;
    EXPECT_TRUE(p->subject_valid) << c.topic;
  }
}

TEST(topics, parse_admin_topics) {
  const topics t("ota/v1");
  const auto req = t.parse("ota/v1/admin/alice/req");
  ASSERT_TRUE(req.has_value());
  EXPECT_EQ(req->kind, topic_kind::admin_request);
  EXPECT_EQ(req->subject, "alice");
  EXPECT_TRUE(req->subject_valid);

  const auto up = t.parse("ota/v1/admin/alice/upload/fw_1.2.3");
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(up->kind, topic_kind::admin_upload);
  EXPECT_EQ(up->subject, "alice");
  EXPECT_TRUE(up->subject_valid);
  EXPECT_EQ(up->upload_id, "fw_1.2.3");
  EXPECT_TRUE(up->upload_id_valid);

  const auto bad_upload = t.parse("ota/v1/admin/alice/upload/" + std::string(65, 'u'));
  ASSERT_TRUE(bad_upload.has_value());
  EXPECT_EQ(bad_upload->kind, topic_kind::admin_upload);
  EXPECT_FALSE(bad_upload->upload_id_valid);

  const auto empty_upload = t.parse("ota/v1/admin/alice/upload/");
  ASSERT_TRUE(empty_upload.has_value());
  EXPECT_FALSE(empty_upload->upload_id_valid);
}

TEST(topics, parse_reports_invalid_subjects) {
  const topics t("ota/v1");
  for (const std::string& topic : std::vector<std::string>{
           "ota/v1/dev/bad:id/up/check", "ota/v1/dev//up/check", "ota/v1/dev/caf\xc3\xa9/up/status",
           "ota/v1/dev/" + std::string(65, 'd') + "/up/check"}) {
    const auto p = t.parse(topic);
    ASSERT_TRUE(p.has_value()) << topic;
    EXPECT_FALSE(p->subject_valid) << topic;
  }
  const auto op = t.parse("ota/v1/admin/bad op/req");
  ASSERT_TRUE(op.has_value());
  EXPECT_EQ(op->kind, topic_kind::admin_request);
  EXPECT_EQ(op->subject, "bad op");
  EXPECT_FALSE(op->subject_valid);
}

TEST(topics, parse_ignores_other_topics) {
  const topics t("ota/v1");
  for (const std::string topic : {
           "ota/v1/dev/d1/down/offer",
           "ota/v1/dev/d1/down/chunk/3a7bd3e2360a3d29/0",
           "ota/v1/dev/d1/down/error",
           "ota/v1/dev/d1/up/check/extra",
           "ota/v1/dev/d1/up",
           "ota/v1/dev/d1",
           "ota/v1/dev",
           "ota/v1/admin/alice/res",
           "ota/v1/admin/alice/req/extra",
           "ota/v1/admin/alice/upload",
           "ota/v1/admin/alice/upload/u1/extra",
           "ota/v1/admin/alice",
           "ota/v1/events/check",
           "ota/v1/service/otterd-1/state",
           "ota/v1/service/metrics",
           "ota/v1/other/d1/up/check",
           "ota/v2/dev/d1/up/check",
           "ota/v1x/dev/d1/up/check",
           "ota/dev/d1/up/check",
           "xota/v1/dev/d1/up/check",
           "/ota/v1/dev/d1/up/check",
           "ota/v1//dev/d1/up/check",
           "ota/v1",
           "ota/v1/",
           "",
       })
    EXPECT_FALSE(t.parse(topic).has_value()) << topic;
}

TEST(topics, multi_level_root) {
  const topics t("site/a/ota/v1");
  EXPECT_EQ(t.device_check("d1"), "site/a/ota/v1/dev/d1/up/check");
  const auto p = t.parse("site/a/ota/v1/dev/d1/up/status");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->kind, topic_kind::device_status);
  EXPECT_EQ(p->subject, "d1");
  EXPECT_FALSE(t.parse("ota/v1/dev/d1/up/status").has_value());
  EXPECT_FALSE(t.parse("site/b/ota/v1/dev/d1/up/status").has_value());
}

TEST(topics, builders_round_trip_through_parse) {
  const topics t("ota/v1");
  EXPECT_EQ(t.parse(t.device_check("d1"))->kind, topic_kind::device_check);
  EXPECT_EQ(t.parse(t.device_status("d1"))->kind, topic_kind::device_status);
  EXPECT_EQ(t.parse(t.device_chunk_request("d1"))->kind, topic_kind::device_chunk);
  EXPECT_EQ(t.parse(t.admin_request("op"))->kind, topic_kind::admin_request);
  EXPECT_EQ(t.parse(t.admin_upload("op", "u1"))->upload_id, "u1");
  // What the service sends is never taken for input.
  EXPECT_FALSE(t.parse(t.offer("d1")).has_value());
  EXPECT_FALSE(t.parse(t.error("d1")).has_value());
  EXPECT_FALSE(t.parse(t.chunk("d1", "0011223344556677", 4096)).has_value());
  EXPECT_FALSE(t.parse(t.admin_response("op")).has_value());
  EXPECT_FALSE(t.parse(t.event("check")).has_value());
  EXPECT_FALSE(t.parse(t.service_state("i")).has_value());
  EXPECT_FALSE(t.parse(t.metrics()).has_value());
}

TEST(topics, valid_topic_root) {
  EXPECT_TRUE(valid_topic_root("ota/v1"));
  EXPECT_TRUE(valid_topic_root("ota"));
  EXPECT_TRUE(valid_topic_root("site/a/ota/v1"));
  EXPECT_FALSE(valid_topic_root(""));
  EXPECT_FALSE(valid_topic_root("/ota/v1"));
  EXPECT_FALSE(valid_topic_root("ota/v1/"));
  EXPECT_FALSE(valid_topic_root("/"));
  EXPECT_FALSE(valid_topic_root("ota/+/v1"));
  EXPECT_FALSE(valid_topic_root("ota/#"));
  EXPECT_FALSE(valid_topic_root("ota+"));
  EXPECT_FALSE(valid_topic_root("ota//v1"));
  EXPECT_FALSE(valid_topic_root("ota/\xc3"));
  EXPECT_FALSE(valid_topic_root(std::string("ota\0v1", 6)));
}
