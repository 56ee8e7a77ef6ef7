"""The web map and its server: the front-end assets, the site's files and policy, the upload, the guarded HTTP server."""
