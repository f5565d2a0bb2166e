-- The queue's size by status, kept by triggers in the same transaction as every change of a
-- post (by the server or a `bot-server posts ...` command next to it). `/metrics` reads these
-- few rows instead of counting every post ever queued: with a million posts that count held
-- the store for 0.25 s per scrape, and frequent scrapes starved the scheduler.
CREATE TABLE post_counts (
    status TEXT PRIMARY KEY,
    n      INTEGER NOT NULL
);
INSERT INTO post_counts (status, n) SELECT status, COUNT(*) FROM posts GROUP BY status;

CREATE TRIGGER post_counts_insert AFTER INSERT ON posts BEGIN
    INSERT INTO post_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER post_counts_update AFTER UPDATE OF status ON posts
WHEN OLD.status IS NOT NEW.status BEGIN
    UPDATE post_counts SET n = n - 1 WHERE status = OLD.status;
    INSERT INTO post_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER post_counts_delete AFTER DELETE ON posts BEGIN
    UPDATE post_counts SET n = n - 1 WHERE status = OLD.status;
END;
