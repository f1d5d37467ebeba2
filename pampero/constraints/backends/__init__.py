"""The constraint backends, one module per library; each imports its library only when used.

=====================  ===========  ===========  =====  ======  ==============  ==========
backend                json_schema  json_object  regex  choice  grammar         whitespace
=====================  ===========  ===========  =====  ======  ==============  ==========
xgrammar               yes          yes          yes    yes     GBNF, Lark      no
guidance (llguidance)  yes          yes          yes    yes     Lark, GBNF      yes
outlines (-core)       yes          bounded [1]  yes    yes     no              yes
lm-format-enforcer     yes          yes          yes    yes     no              no
=====================  ===========  ===========  =====  ======  ==============  ==========

[1] values nest one level (outlines compiles JSON to a regular expression).
"""
