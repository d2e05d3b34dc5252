"""Export the canonical model as JSON Schema files, for other teams and tools."""

from __future__ import annotations

import json
from pathlib import Path

from canonical.models import InventoryLevel, Order, Shipment, Sku

MODELS = {"order": Order, "sku": Sku, "inventory_level": InventoryLevel, "shipment": Shipment}


def export_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in MODELS.items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(mode="serialization"), indent=2, ensure_ascii=False) + "\n")
        written.append(path)
    return written
