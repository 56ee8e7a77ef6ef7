"""The raw inputs: YFCC100M metadata files and the image bucket, and reading what they hold (lines, images, faces)."""
