"""The narration track of a synthetic video: a speech-like signal exactly over the timed words.

:func:`synth_audio` gives mono float32 samples: a voiced, syllable-modulated tone inside each
page's words and quiet room tone everywhere else, so speech detection has a known answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.synthetic.timeline import count_syllables

if TYPE_CHECKING:
    import numpy as np

    from pipeline.synthetic.spec import Segment


def synth_audio(segments: list[Segment], n_samples: int, sample_rate: int, seed: int) -> "np.ndarray":
    """Mono float32 narration: a voiced, syllable-modulated signal in each page's words, near-silence elsewhere."""
    import numpy as np

    rng = np.random.default_rng([seed, 4242])
    x = rng.normal(0.0, 2e-4, n_samples).astype(np.float32)  # about -74 dBFS room tone
    sr = sample_rate
    f0_base = rng.uniform(165, 225)
    for seg in segments:
        if seg.kind != "page" or not seg.words:
            continue
        i0, i1 = int(round(seg.speech_start * sr)), min(int(round(seg.speech_end * sr)), n_samples)
        t = np.arange(i1 - i0) / sr
        # pitch: slow declination, vibrato and a random accent curve
        accents = np.interp(t, np.linspace(0, t[-1] if len(t) else 1, 8), rng.uniform(-0.08, 0.12, 8))
        f0 = f0_base * (1.05 - 0.1 * t / max(t[-1], 1e-3) + 0.02 * np.sin(2 * np.pi * 5.5 * t) + accents)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        voiced = np.zeros_like(t)
        for h, amp in zip(range(1, 9), (1.0, 0.7, 0.55, 0.35, 0.25, 0.18, 0.12, 0.08)):
            voiced += amp * np.sin(h * phase + h * 0.3)
        env = np.zeros_like(t)
        for word, w0, w1 in seg.words:
            n_syl = count_syllables(word)
            edges = np.linspace(w0, w1, n_syl + 1)
            for s0, s1 in zip(edges[:-1], edges[1:]):
                a0, a1 = int((s0 - seg.speech_start) * sr), int((s1 - seg.speech_start) * sr)
                a1 = min(a1, len(t))
                if a1 - a0 < 4:
                    continue
                u = np.linspace(0, 1, a1 - a0)
                env[a0:a1] = np.maximum(env[a0:a1], np.sin(np.pi * u) ** 0.6 * rng.uniform(0.7, 1.0))
        noise = rng.normal(0, 1, len(t))
        x[i0:i1] += (0.12 * voiced + 0.03 * noise) * env
    return np.clip(x, -1, 1).astype(np.float32)
