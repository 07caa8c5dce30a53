"""Stand-in for transformers' `tests/exporters/test_export.py`, absent from its source distribution:
`ModelTesterMixin` derives from `ExportTesterMixin`; with this one no `torch.export` test runs."""


class ExportTesterMixin:
    pass
