"""The DuckDB catalog: every run, model, feature set, feature, window, example, explanation, score, finding and
attribution graph, each traceable to the run that made it. One module per table family; `Catalog` is all of them on one
connection."""

from tools.catalog.connection import check_catalog_path, insert_row
from tools.catalog.features import FeatureSetRows, FeatureTables
from tools.catalog.findings import FindingTables
from tools.catalog.graphs import GraphTables
from tools.catalog.runs import RESUMABLE
from tools.catalog.schema import SCHEMA_VERSION
from tools.catalog.turns import runs_folder


class Catalog(FeatureTables, FindingTables, GraphTables):
    """An open catalog file with every table family's reads and writes."""


__all__ = ["Catalog", "FeatureSetRows", "RESUMABLE", "SCHEMA_VERSION", "check_catalog_path", "insert_row",
           "runs_folder"]
