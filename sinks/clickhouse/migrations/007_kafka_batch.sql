-- Which sink batch wrote each row: the Kafka offset ranges of that insert ("topic:partition:first-last;...").
-- After a crash the sink re-inserts an uncommitted batch with the same deduplication token, so
-- ClickHouse completes whatever part of it (raw table or materialized views) had not landed.
ALTER TABLE events ADD COLUMN IF NOT EXISTS kafka_batch String DEFAULT '' CODEC(ZSTD(1));
ALTER TABLE outcomes ADD COLUMN IF NOT EXISTS kafka_batch String DEFAULT '' CODEC(ZSTD(1));
ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS kafka_batch String DEFAULT '' CODEC(ZSTD(1));
