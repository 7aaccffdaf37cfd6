-- device.list finds a version by its identity, build metadata dropped (PROTOCOL.md: "1.0.0"
-- finds a device that reported "1.0.0+b7"), so the index is on that identity.
DROP INDEX devices_model_version;
CREATE INDEX devices_model_version ON devices (model, split_part(version, '+', 1));
