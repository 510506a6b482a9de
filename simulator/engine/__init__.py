"""The SimPy engine (stage 5): the only package that imports simpy."""
