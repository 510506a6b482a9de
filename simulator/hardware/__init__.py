"""Pure physics of models and chips (stage 2): shapes, bytes, FLOPs, roofline times. No SimPy here."""
