"""The artifact format shared by ``edgeadapt.export`` (writes it) and ``edgeadapt.runtime`` (reads it), torch-free.

- :mod:`.names`: file names, graph input/output names and ExecuTorch method names;
- :mod:`.files`: sha256, bounded reads of regular files inside a folder, atomic file and folder writes whose
  operating-system errors are StorageErrors;
- :mod:`.archive`: bounded reading of zips (stored members only) and ``.npy`` arrays (header checked first);
- :mod:`.manifest`: the format version, the manifest's schema, canonical form and self-checksum, and its reader;
- :mod:`.signing`: optional Ed25519 signatures over the manifest (the ``sign`` extra);
- :mod:`.extras`: optional dependencies imported on first use, with an error naming the extra to install;
- :mod:`.inputs`: :class:`InputSpec`, what one model input is (shape, modality, range, normalisation, and ink
  polarity for drawings), made by the dataset and carried through the checkpoint and the manifest to the device;
- :mod:`.vocab`: the closed vocabularies (scopes, head initialisations, losses, input modalities, ...), typed once;
- :mod:`.errors`: every exception of the format and the runtime (:class:`EdgeAdaptError` and its subclasses).

This layer imports nothing else of edgeadapt (and no torch): the runtime stands on it alone.
"""
