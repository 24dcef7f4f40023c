"""End-to-end pipelines of the papers steerlab reproduces, built from the core modules.

Each pipeline is what a paper's method does from a dataset to a table: splits, vectors, the
validation grid and the test evaluation. The CLI commands and the numbered notebooks call these.
"""
