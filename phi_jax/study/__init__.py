"""Studies: one model and token budget trained on several datasets ("arms"), then compared
(`arms.run`; the README's main job). Above curation and train in the layers: it makes data,
trains runs and measures them."""
