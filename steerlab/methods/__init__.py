"""Direction-finding methods: linear (mean difference, PCA, probe, Fisher scores) and BiPO."""
