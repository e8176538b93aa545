"""`mammography eval-export`: the metric pack of trained models, compared and exported."""
