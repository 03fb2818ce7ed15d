"""The feature store: Ray Data ingest into sharded Parquet + manifest, and the padded-batch reader.

Layout: `STORE/manifest.json` (written last), `STORE/<split>/part-NNNNN.parquet`,
`STORE/rejects.parquet`. Row schema: `vavl.store.schema.ROW_SCHEMA`.
"""

from vavl.store.ingest import IngestReport, ingest_corpus, ingest_corpus_folder
from vavl.store.reader import BatchSpec, FeatureStore, collate, iter_batches
from vavl.store.schema import ROW_SCHEMA, SCHEMA_VERSION, StoreError

__all__ = [
    "ROW_SCHEMA",
    "SCHEMA_VERSION",
    "BatchSpec",
    "FeatureStore",
    "IngestReport",
    "StoreError",
    "collate",
    "ingest_corpus",
    "ingest_corpus_folder",
    "iter_batches",
]
