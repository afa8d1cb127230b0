"""The registry's static site, and the renderer the registry stores card pages with (SPEC §9).

One job per module; the site reads the registry through ``acards.registry.reader`` only::

    renderer  card.html and card.md of a signed card: what ``acards publish`` stores, and what
              ``acards registry verify`` re-renders to compare byte for byte
    view      what a page shows: card summaries, templates, the stored card page with the site's
              header and footer spliced in, the refusal of active content
    build     ``build_site(DIR)``: verify the registry, write every page into a fresh folder
    swap      put the built folder in place of DIR/site in one step
    serve     ``make_server(DIR)``: DIR/site over HTTP on 127.0.0.1 only, read-only


``build_site(DIR)`` writes ``DIR/site/``::

    index.html                 the latest version of every card id: id, title, version, claims
                               supported / total, full-card passes, signers, digest, status
    filter.js                  the index's row filter (the only script of the site)
    log.html                   every log entry, and the newest signed checkpoint (size, root)
    checkpoint.json            that checkpoint file, byte for byte (pass it to
                               `acards registry verify DIR --checkpoint` later)
    registry.pub, keys/*.pub   the registry key and every trusted signer's key
    cards/<digest>.html        one page per published card version: the stored card.html with the
                               site's header and footer spliced in
    cards/<digest>/card.html   the rendered files exactly as published (byte for byte, so their
    cards/<digest>/card.md     sha256 is the one the log names), and the signed envelope
    cards/<digest>/envelope.json
"""

SITE = "site"  # the site's folder inside the registry folder
