"""M-CTC-T (Meta's multilingual CTC model, `speechbrain/m-ctc-t-large`), our own port.

transformers removed the model in 5.0 (4.57.6 was its last release). This package
reads the same checkpoints, config keys and state-dict keys unchanged, and is proven
equal to 4.57.6 by `tests/models/test_mctct.py`:

- `config`: typed `config.json` / `preprocessor_config.json`;
- `features`: the MFSC front end (log mel filterbank, per-utterance normalisation);
- `modeling`: the network (GLU conv subsampler, relative-position attention, CTC head);
- `checkpoint`: weights from safetensors (or a weights-only pickle), hub downloads;
- `adapter`: `MctctCtcModel`, what the CTC stage calls.
"""

from pipeline.models.mctct.adapter import MctctCtcModel, load_mctct

__all__ = ["MctctCtcModel", "load_mctct"]
