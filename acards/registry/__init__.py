"""The card registry: a folder anyone can host statically and verify offline (SPEC §9).

One job per module; import from the module that has it (this package re-exports nothing)::

    layout       the folder's file and folder names: the only module that knows them
    entries      log entries (pure): field checks, building, parsing one log line
    rules        SPEC §9's rules over entries in order (pure): LogRules
    cards        a signed card as the registry takes it (pure): verified payload, identity, pages
    checkpoints  signed checkpoints of the log's size and Merkle root (pure)
    disk         the lock, and raw reads of the folder's parts (config, log, keys, checkpoints)
    store        init, trust, and the card writers publish and revoke
    writer       what every writer shares: write_entry, crash repair, idempotent retries
    preregistrations  the "preregister" entry kind: logging a signed analysis plan, checking it
    trust        the registry key (registry.pub) apart from the card signers (keys/), moving the
                 key of a registry made before registry.pub out of keys/, and the signers' names
                 the registry key signs (keys/<keyid>.json)
    state        the writer's signed state (size, root, compact range, index root), checked
                 against the folder before a publish trusts it
    index        the rules index a writer asks instead of re-reading the log (node file, views)
    trie         the authenticated map the index is (pure): every node checked by its hash
    audit        offline verification: verify_registry, check_registry, RegistryVerification
    proofs       inclusion and consistency proofs, and their verifiers
    reader       read-only access for consumers (the static site reads the registry through it)
    bundle       submission bundles: written by `acards submit`, checked whole and published by
                 `acards registry accept`


Rules (SPEC §9), checked by ``rules.LogRules`` for publish and verify alike: no digest is published
twice; the versions of one card id strictly increase (a revoked version keeps its number); each
publish entry's ``supersedes`` is the digest of its card id's latest published version (null for
the first); the registry computes it, and a claim by the caller or by the signed predicate
(``predicate.supersedes``, beside ``card`` and ``report``) must agree; a revocation names a
published, not yet revoked digest; every entry carries this registry's origin and its position as
index. Every key in keys/ is trusted to sign cards; the registry key (registry.pub) signs the log,
and signs cards only when trusted in keys/ as well (``trust.migrate_keys`` for older folders).
``store.publish`` extends the log from its signed
state in O(log n), and reads the whole log again, checking it against its newest signed checkpoint,
whenever the state does not describe the folder exactly; ``audit.verify_registry`` checks
everything.
"""
