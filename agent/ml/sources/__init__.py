"""Prediction sources: readers that turn what an app sends into agent/ml/predictions.py's types.

A source reads one kind of input (today OTLP spans and log records, `otlp.Extractor`)
and produces `Extracted`: `Predictions` per model version, `Labels`, `GenAiCalls`. It
finds values its own way but normalises them only through the functions in
agent/ml/predictions.py, so that every source gives equal results for equal input.
The OTLP source has two peer readers, `wire_reader` (the compiled scanner's records)
and `message_reader` (parsed messages), and `mapping` for the `attributes:` setting
both apply.
"""
