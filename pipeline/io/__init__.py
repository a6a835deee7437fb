"""A build's storage: where it reads and writes (storage: local paths and object-storage URLs), its files
(build_dir: manifest, shards, rejects, card, validation; manifest; schema; rows), the resumable shards of
its image work (shards) and how a finished build is published (publish)."""
