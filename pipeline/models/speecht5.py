"""SpeechT5 text-to-speech behind a small adapter: texts, speaker embeddings and seeds in,
16 kHz waveforms with their frame counts and stop flags out.

The stage (`pipeline/stages/synthesize.py`) owns text normalisation, sentence pieces,
batching and columns; this module owns the checkpoint pair (SpeechT5ForTextToSpeech and
a SpeechT5HifiGan vocoder, each a hub id, a folder or an object-storage prefix) and runs
them through `pipeline/models/speecht5_decode.py`, where each item's output is what it
would be alone: the same text, speaker and seed give the same audio in any batch.

An output is `empty` when the decoder stopped at its very first step (one frame pair,
32 ms: the model declined to speak) or the waveform never rises above -60 dBFS; it is a
`runaway` when it reached the length cap without the stop head firing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import ModelLoadError
from pipeline.kinds.synthesize import SynthesizeTaskSpec
from pipeline.models.device import autocast, pick_dtype
from pipeline.models.hub import Source, pretrained, processor, resolve
from pipeline.models.speecht5_decode import DecodeOptions, decode, postnet, split_seeds, vocode
from pipeline.spec import StorageOptions

if TYPE_CHECKING:
    import torch

EMPTY_PEAK = 1e-3  # -60 dBFS


@dataclass(frozen=True)
class Synth:
    """One synthesized text: mono float32 samples at the vocoder's rate (16 kHz)."""

    waveform: np.ndarray
    n_frames: int  # spectrogram frames; len(waveform) == n_frames * hop
    runaway: bool  # hit the maximum length without the stop head firing
    empty: bool  # stopped at the first step, or no sample above -60 dBFS


@dataclass
class SpeechT5Synthesizer:
    """A loaded SpeechT5 TTS model, its vocoder and tokenizer, on one device."""

    name: str  # the model URI as given in the spec (recorded in the output)
    model: Any  # SpeechT5ForTextToSpeech, eval mode
    vocoder: Any  # SpeechT5HifiGan, eval mode
    tokenizer: Any  # SpeechT5Tokenizer
    device: str
    dtype: torch.dtype
    options: DecodeOptions = field(default_factory=DecodeOptions)
    vocoder_frames: int = 32_768  # padded spectrogram frames per vocoder call
    vocoder_padding: float = 0.25  # at most this share of a vocoder call's frames is padding
    sampling_rate: int = field(init=False)
    hop: int = field(init=False)  # waveform samples per spectrogram frame
    speaker_dim: int = field(init=False)
    max_tokens: int = field(init=False)

    def __post_init__(self) -> None:
        voc = self.vocoder.config
        self.sampling_rate = int(voc.sampling_rate)
        self.hop = int(np.prod(voc.upsample_rates))
        self.speaker_dim = int(self.model.config.speaker_embedding_dim)
        self.max_tokens = int(self.model.config.max_text_positions)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, end-of-sentence token included."""
        return self.tokenizer(texts)["input_ids"]

    min_samples = 0  # `ModelAdapter`: the input is text, there is no audio to check

    def cost(self, chars: int) -> int:
        return chars

    def predict(self, batch: list[tuple[str, np.ndarray, int]]) -> list[Synth]:
        """`ModelAdapter.predict` over (text, speaker x-vector, seed) triples."""
        texts, speakers, seeds = zip(*batch, strict=True)
        return self.synthesize(list(texts), np.stack(speakers), list(seeds))

    def synthesize(self, texts: list[str], speakers: np.ndarray, seeds: list[int]) -> list[Synth]:
        """Waveforms for `texts` (one batch), speaker x-vectors [n, 512], one seed per text.

        Raises ValueError for inputs the model cannot take (too many tokens, wrong shapes).
        """
        import torch

        if not texts and len(seeds) == 0 and np.size(speakers) == 0:
            return []
        ids = self.token_ids(texts)
        self._check(ids, speakers, seeds)
        lengths = [len(i) for i in ids]
        # A multiple of 8 keeps the cross-attention mask aligned for the fused attention
        # kernels on GPU; padded tokens are masked, so the output does not change.
        width = -(-max(lengths) // 8) * 8
        input_ids = torch.full((len(ids), width), self.tokenizer.pad_token_id)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq)
        mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
        with torch.inference_mode(), autocast(self.device, self.dtype):
            decoded = decode(
                self.model,
                input_ids.to(self.device),
                mask.to(self.device),
                torch.as_tensor(np.asarray(speakers, np.float32), device=self.device),
                split_seeds(seeds, self.device),
                self.options,
            )
            mels = postnet(self.model, [d.mel for d in decoded])
            waves = self._vocode(mels)
        return [
            Synth(
                waveform=wave,
                n_frames=len(mel),
                runaway=d.runaway,
                empty=d.steps <= 1 or float(np.abs(wave).max(initial=0.0)) < EMPTY_PEAK,
            )
            for d, mel, wave in zip(decoded, mels, waves, strict=True)
        ]

    def _check(self, ids: list[list[int]], speakers: np.ndarray, seeds: list[int]) -> None:
        shape = np.shape(speakers)
        if shape != (len(ids), self.speaker_dim) or len(seeds) != len(ids):
            raise ValueError(
                f"{len(ids)} texts need speakers of shape ({len(ids)}, {self.speaker_dim}) "
                f"and {len(ids)} seeds; got {shape} and {len(seeds)}"
            )
        longest = max((len(i) for i in ids), default=0)
        if longest > self.max_tokens:
            raise ValueError(
                f"a text has {longest} tokens, more than the {self.max_tokens} {self.name} "
                "accepts; split texts into shorter pieces (max_chars)"
            )

    def _vocode(self, mels: list[torch.Tensor]) -> list[np.ndarray]:
        """Vocoder passes over length-sorted groups of at most `vocoder_frames` padded frames,
        little of it padding.

        Output lengths follow the stop head, not the text, so one batch mixes 30 ms and
        10 s items; a convolutional vocoder pays for every padded frame (one group for
        all of them was 6x slower than item by item on CPU, benchmarks/RESULTS.md).
        """
        groups: list[list[int]] = []
        real = 0
        for i in sorted(range(len(mels)), key=lambda i: len(mels[i])):
            n = len(mels[i])
            padded = n * (len(groups[-1]) + 1) if groups else 0
            if groups and padded <= min(
                self.vocoder_frames, (1 + self.vocoder_padding) * (real + n)
            ):
                groups[-1].append(i)
                real += n
            else:
                groups.append([i])
                real = n
        waves: dict[int, np.ndarray] = {}
        for group in groups:
            for i, wave in zip(group, vocode(self.vocoder, [mels[i] for i in group]), strict=True):
                waves[i] = wave.float().cpu().numpy()
        return [waves[i] for i in range(len(mels))]


def load_speecht5(
    spec: SynthesizeTaskSpec, storage: StorageOptions, device: str
) -> SpeechT5Synthesizer:
    """Resolve and load `spec.model` and `spec.vocoder` on `device` ("cpu", "cuda", ...)."""
    from transformers import SpeechT5ForTextToSpeech, SpeechT5HifiGan, SpeechT5Tokenizer

    dtype = pick_dtype(spec.dtype, device)
    trust = spec.trust_remote_code
    source = resolve(spec.model, revision=spec.revision, storage=storage, trust_remote_code=trust)
    vocoder_source = resolve(spec.vocoder, revision=None, storage=storage, trust_remote_code=trust)
    tts = _load(SpeechT5ForTextToSpeech, source, dtype)
    vocoder = _load(SpeechT5HifiGan, vocoder_source, dtype)
    tokenizer = processor(
        SpeechT5Tokenizer,
        source,
        lambda exc: (
            f"model {spec.model!r}: cannot load its SpeechT5 tokenizer "
            f"({type(exc).__name__}: {exc}); the folder needs spm_char.model and "
            "tokenizer_config.json, as SpeechT5Processor.save_pretrained writes them"
        ),
    )
    _check_pair(spec, tts, vocoder)
    options = DecodeOptions(
        stop_threshold=spec.stop_threshold,
        minlenratio=spec.minlenratio,
        maxlenratio=spec.maxlenratio,
    )
    return SpeechT5Synthesizer(
        spec.model,
        tts.to(device).eval(),
        vocoder.to(device).eval(),
        tokenizer,
        device=device,
        dtype=dtype,
        options=options,
    )


def _load(cls, source: Source, dtype):
    """`cls.from_pretrained` on a resolved `source`, failures as ModelLoadError.

    The checkpoint's own config must name the expected architecture: given the wrong
    folder, `from_pretrained` would otherwise warn, initialise every missing weight at
    random and carry on.
    """
    from transformers import AutoConfig

    def failure(exc: Exception) -> str:
        return (
            f"{source.uri!r}: cannot load it as {cls.__name__} ({type(exc).__name__}: {exc}); "
            "`model` must be a SpeechT5 text-to-speech checkpoint (e.g. microsoft/speecht5_tts) "
            "and `vocoder` a SpeechT5 HiFi-GAN (e.g. microsoft/speecht5_hifigan)"
        )

    config = processor(AutoConfig, source, failure)
    if config.model_type != cls.config_class.model_type:
        raise ModelLoadError(
            failure(ValueError(f"its config says model_type {config.model_type!r}"))
        )
    return pretrained(cls, source, failure, config=config, dtype=dtype)


def _check_pair(spec: SynthesizeTaskSpec, tts, vocoder) -> None:
    mel, vocoder_in = tts.config.num_mel_bins, vocoder.config.model_in_dim
    if mel != vocoder_in:
        raise ModelLoadError(
            f"model {spec.model!r} makes {mel}-bin spectrograms but vocoder {spec.vocoder!r} "
            f"takes {vocoder_in} bins; use the vocoder trained with the model"
        )
    rate = int(vocoder.config.sampling_rate)
    if rate != spec.sample_rate:
        raise ModelLoadError(
            f"vocoder {spec.vocoder!r} makes {rate} Hz audio but the task's sample_rate is "
            f"{spec.sample_rate}; set sample_rate: {rate} in the task"
        )
