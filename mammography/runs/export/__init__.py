"""`mammography runs export`: runs shown in MLflow or TensorBoard."""
