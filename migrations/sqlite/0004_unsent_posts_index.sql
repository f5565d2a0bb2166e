-- Every `post` run first looks for its actor's unsent posts: a small partial index of the
-- posts still to send, so that lookup does not read through every post of the target.
CREATE INDEX posts_unsent ON posts (target, source_actor) WHERE status IN ('sending', 'approved');
