"""`acards import`: records and prompts from the tools researchers evaluate with.

One module per source (`table`, `lm_eval`, `inspect_log`, `eee`), each reading its files into plain source
records with its default rules; `mapping` turns source records into acards records under the
user's mapping file; `run` counts, checks and writes; `reimport` imports a card's pinned sources again for
`acards verify` (`records: {from: import}`, and `prompts: {from: import}` with them).  A heavy reader (inspect_ai, pyarrow) is
imported only by the source that needs it.
"""
