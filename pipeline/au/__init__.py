"""AU estimation from what the face stage measures: mesh measures, the AU head, its derivation and its fitting."""
