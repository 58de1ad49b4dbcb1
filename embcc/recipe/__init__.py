"""`embcc build RECIPE.toml`: a matrix of artifacts (checkpoints x formats x precisions x LoRA modes x tasks), each
exported and verified, with one summary (table, summary.json, summary.junit.xml). Schema: docs/recipe.md.

Three phases:
1. parse and check the recipe (stdlib tomllib) without touching the disk: unknown keys, formats, precisions,
   option types, missing checkpoints; then write the fixture checkpoints and check every artifact's export
   options against its checkpoint (export.options.resolve). Any mistake: one EmbccError line (CLI exit 2) and
   nothing this run wrote is left on disk.
2. run every artifact, in this process or as one Ray task each (`ray=True` / an address): an artifact whose
   directory exists with a manifest that matches the entry (checkpoint sha256, recorded options, embcc version,
   every file's sha256) and a parity.json for that checkpoint is "up to date" and not rebuilt; one whose files or
   inputs differ is removed and rebuilt. Half-written exports never appear at the artifact's path (staged_dir).
3. summary: PASS / FAIL (a parity bar missed) / ERROR (export or verify raised), exit 1 unless all PASS.
"""

from embcc.recipe.run import LOCAL_OBJECT_STORE, run_job
from embcc.recipe.schema import (
    CHECKPOINT_KEYS,
    DEFAULT_MEMORY,
    DEFAULT_NUM_CPUS,
    DEFAULT_OUT,
    ENTRY_KEYS,
    FIXTURES_DIR,
    MATRIX_KEYS,
    OPTION_KEYS,
    OWN_KEYS,
    PATH_OPTIONS,
    TOP_KEYS,
    Checkpoint,
    Job,
    Recipe,
    parse,
    parse_memory,
    prepare,
)
from embcc.recipe.summary import SUMMARY_JSON, SUMMARY_JUNIT, format_summary, junit_xml, run_recipe

__all__ = [
    "CHECKPOINT_KEYS", "DEFAULT_MEMORY", "DEFAULT_NUM_CPUS", "DEFAULT_OUT", "ENTRY_KEYS", "FIXTURES_DIR",
    "LOCAL_OBJECT_STORE", "MATRIX_KEYS", "OPTION_KEYS", "OWN_KEYS", "PATH_OPTIONS", "SUMMARY_JSON", "SUMMARY_JUNIT",
    "TOP_KEYS", "Checkpoint", "Job", "Recipe", "format_summary", "junit_xml", "parse", "parse_memory", "prepare",
    "run_job", "run_recipe",
]
