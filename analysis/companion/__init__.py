"""Report sections of the companion studies (PROTOCOL.md section 2).

Each module has ``section(study_dir: Path, out_dir: Path) -> dict`` returning
``{"title", "html" (a fragment: figures as base64 PNG, tables with captions),
"tables": {name: DataFrame}}``, read from the done run folders under
``study_dir/runs/*/``. Like the rest of ``analysis``, they never import torch.
"""
