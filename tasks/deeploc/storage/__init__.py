"""Where data lives and how it enters the lake: locations, the lake, Iceberg tables and commits, ledgers, slices, checkpoints, the shard cache, model runs."""
