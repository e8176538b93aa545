"""Cross-validation: folds drawn, trained (in process or in workers), resumed, summed up."""
