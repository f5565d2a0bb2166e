-- When the run was due, so lateness (started_at - scheduled_at) can be measured per run.
ALTER TABLE runs ADD COLUMN scheduled_at INTEGER;
