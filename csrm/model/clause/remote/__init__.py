"""The remote code an exported clause CSRM carries (``csrm export``): files that ``transformers`` loads from the
model folder with ``trust_remote_code=True`` in a process without csrm. They import only torch and
transformers; :mod:`csrm.scoring.clause_export` copies them into the export. Why they are copies of the clause
family's code, and how drift is caught: :mod:`csrm.model.clause.remote.modeling_csrm_clause`."""
