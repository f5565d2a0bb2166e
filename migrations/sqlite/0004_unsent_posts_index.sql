-- Every `post` run first looks for its actor's unsent posts: by target and source actor, so
-- the lookup does not read through every unsent post of the target. (Not a partial index:
-- SQLite re-prepares a statement on every execution when choosing a partial index depended
-- on the statement's parameters.)
CREATE INDEX posts_by_source ON posts (target, source_actor, status);
