"""The attribute names that mark an item as something the `ml` processor reads, for the modules that
must recognise one without loading the engine (and numpy): the processor itself, the unwatched watch."""

MODEL_NAME = "ml.model.name"  # a prediction, or a label for one
GENAI_PREFIX = "gen_ai."  # a GenAI call (the semantic conventions' gen_ai.* attributes)
