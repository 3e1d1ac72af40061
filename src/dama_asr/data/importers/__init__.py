"""Importers: research corpus layouts -> validated manifests. One module per layout.

`dama_asr.data.importers.hf` needs the optional `datasets` package and is imported on use only.
"""

from dama_asr.data.importers.common import ImportResult, whisper_code
from dama_asr.data.importers.common_voice import import_common_voice
from dama_asr.data.importers.fleurs import import_fleurs
from dama_asr.data.importers.folder import import_folder

__all__ = ["ImportResult", "import_common_voice", "import_fleurs", "import_folder", "whisper_code"]
