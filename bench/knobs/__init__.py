"""The knobs bench: one GPU setting or kernel measured at a time, a section per part of the model."""
