-- otter schema v1. Constraints are the last line of defence: the service validates first,
-- but nothing that breaks the protocol's rules can be stored even by a buggy writer.

CREATE TABLE devices (
  -- seq orders device.list pages (registration order) and is their cursor.
  seq        bigserial UNIQUE,
  id         text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
  model      text NOT NULL CHECK (model ~ '^[A-Za-z0-9_.-]{1,64}$'),
  version    text NOT NULL CHECK (length(version) BETWEEN 1 AND 128),
  attrs      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attrs) = 'object'),
  first_seen timestamptz NOT NULL,
  last_seen  timestamptz NOT NULL
);
CREATE INDEX devices_model_version ON devices (model, version);

-- Raw images, content-addressed: the file is OTTER_DATA_DIR/images/<sha256>.
CREATE TABLE uploads (
  sha256      text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  size        bigint NOT NULL CHECK (size >= 0),
  uploaded_by text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE releases (
  id          bigserial PRIMARY KEY,
  model       text NOT NULL CHECK (model ~ '^[A-Za-z0-9_.-]{1,64}$'),
  version     text NOT NULL CHECK (length(version) BETWEEN 1 AND 128),
  -- The identity of a version: build metadata dropped (1.1.0+b7 and 1.1.0 are one release).
  version_key text NOT NULL CHECK (length(version_key) BETWEEN 1 AND 128 AND position('+' in version_key) = 0),
  sha256      text NOT NULL REFERENCES uploads (sha256),
  size        bigint NOT NULL CHECK (size >= 0),
  min_version text CHECK (min_version IS NULL OR length(min_version) BETWEEN 1 AND 128),
  notes       text CHECK (notes IS NULL OR length(notes) <= 4096),
  image_sig   text CHECK (image_sig IS NULL OR image_sig ~ '^[A-Za-z0-9_-]{1,128}$'),
  created_by  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (model, version_key)
);

CREATE TABLE rollouts (
  id              bigserial PRIMARY KEY,
  name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
  release_id      bigint NOT NULL REFERENCES releases (id),
  target          jsonb NOT NULL CHECK (
                    jsonb_typeof(target) = 'object'
                    AND target ->> 'type' IN ('all', 'percent', 'devices', 'group')
                    AND (target ->> 'type' <> 'percent'
                         OR (jsonb_typeof(target -> 'percent') = 'number'
                             AND (target ->> 'percent')::numeric BETWEEN 0 AND 100))),
  state           text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'cancelled')),
  allow_downgrade boolean NOT NULL DEFAULT false,
  reason          text CHECK (reason IS NULL OR length(reason) <= 256),
  created_by      text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rollouts_release ON rollouts (release_id);
CREATE INDEX rollouts_state ON rollouts (state, id);

-- No foreign keys on the high-volume tables: a batch must never fail because of one row.
CREATE TABLE status_reports (
  id       bigserial PRIMARY KEY,
  device   text NOT NULL CHECK (device ~ '^[A-Za-z0-9_.-]{1,64}$'),
  rollout  bigint,
  version  text NOT NULL CHECK (length(version) BETWEEN 1 AND 128),
  state    text NOT NULL CHECK (state IN ('downloading', 'verifying', 'installing', 'success',
                                          'failed', 'rejected', 'rolled_back')),
  progress smallint CHECK (progress BETWEEN 0 AND 100),
  error    text CHECK (error IS NULL OR length(error) <= 256),
  at       timestamptz NOT NULL
);
CREATE INDEX status_reports_device ON status_reports (device, id);
CREATE INDEX status_reports_rollout ON status_reports (rollout, id);
CREATE INDEX status_reports_state ON status_reports (state, id);

-- Where each device stands in each rollout: what rollout.get counts.
CREATE TABLE rollout_devices (
  rollout    bigint NOT NULL,
  device     text NOT NULL,
  state      text NOT NULL CHECK (state IN ('offered', 'downloading', 'verifying', 'installing',
                                            'success', 'failed', 'rejected', 'rolled_back')),
  offered_at timestamptz,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (rollout, device)
);
CREATE INDEX rollout_devices_device ON rollout_devices (device);

CREATE TABLE events (
  id       bigserial PRIMARY KEY,
  at       timestamptz NOT NULL,
  kind     text NOT NULL CHECK (kind ~ '^[a-z_]{1,32}$'),
  device   text,
  actor    text,
  rollout  bigint,
  instance text,
  data     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(data) = 'object')
);
CREATE INDEX events_device ON events (device, id);
CREATE INDEX events_kind ON events (kind, id);
CREATE INDEX events_rollout ON events (rollout, id);
CREATE INDEX events_at ON events (at);

-- Every instance keeps its in-memory catalog current through this channel.
CREATE FUNCTION otter_notify_catalog() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('otter_catalog', TG_TABLE_NAME);
  RETURN NULL;
END $$;
CREATE TRIGGER releases_notify AFTER INSERT OR UPDATE OR DELETE ON releases
  FOR EACH STATEMENT EXECUTE FUNCTION otter_notify_catalog();
CREATE TRIGGER rollouts_notify AFTER INSERT OR UPDATE OR DELETE ON rollouts
  FOR EACH STATEMENT EXECUTE FUNCTION otter_notify_catalog();
