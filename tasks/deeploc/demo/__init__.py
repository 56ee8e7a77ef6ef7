"""The embedded demo data set: YFCC100M-shaped metadata, a bucket-shaped image folder, a manifest."""
