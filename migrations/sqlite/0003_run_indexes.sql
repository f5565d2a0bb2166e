-- Start-up looks for runs left `running` by a crash, and pruning deletes by start time:
-- both must not scan the whole table as it grows.
CREATE INDEX runs_running ON runs (outcome) WHERE outcome = 'running';
CREATE INDEX runs_by_start ON runs (started_at);
