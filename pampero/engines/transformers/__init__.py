"""Hugging Face transformers models (text and vision-language) from a local directory.

Needs the optional extra: ``pip install 'pampero[transformers]'``. See ``engine`` for how
requests are run.
"""
