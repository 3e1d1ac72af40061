"""Study reports: aggregate cell results, plot them, render HTML and markdown."""

from dama_asr.report.html import build_report
from dama_asr.report.results import aggregate, load_cell_results, markdown_tables
from dama_asr.report.utterances import utterance_section

__all__ = ["aggregate", "build_report", "load_cell_results", "markdown_tables", "utterance_section"]
