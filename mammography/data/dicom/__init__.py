"""DICOM: headers, decoding (every transfer syntax), the intensity chain, views, errors."""
