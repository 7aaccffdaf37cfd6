-- When the state of a rollout's device was reported. A report can be recorded after a newer
-- one (instances sharing the device topics; a report held for its offer): the state is the
-- newest report's, not the last written. Existing rows: their updated_at is the best guess.
ALTER TABLE rollout_devices ADD COLUMN status_at timestamptz;
UPDATE rollout_devices SET status_at = updated_at WHERE state <> 'offered';
