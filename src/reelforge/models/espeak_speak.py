"""Speak one text with libespeak-ng (the engine the espeak-ng binary wraps) and report where every word
starts: run as its own process, `python -I -S espeak_speak.py VOICE WPM` with the UTF-8 text on stdin.

Why a process per sentence: the library keeps one global synthesiser whose state carries from one text to
the next (the same sentence spoken twice in one process differs by up to ~1000 samples), while a fresh
process's first text equals the binary's output sample for sample. So the audio stays what the binary
made, and the words come with it. Standard library only (ctypes), so it starts in ~20 ms without the
virtualenv's site packages.

Output: one JSON line {"rate": Hz, "words": [[first character, length, first sample], ...]} (characters
count code points from 0), then the samples as int16 little-endian. Exit 3: no library; 4: no such voice.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import sys

# speak_lib.h, API revision 12
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000
POS_CHARACTER = 1
CHARS_UTF8 = 1
ENDPAUSE = 0x1000  # the sentence pause at the end, which the binary adds too
RATE = 1
EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EE_OK = 0
NO_LIBRARY, NO_VOICE = 3, 4


class EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", EventId)]


class Voice(ctypes.Structure):  # espeak_VOICE
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(Event))


def speak(text: str, voice: str, wpm: int) -> tuple[int, list[list[int]], bytes]:
    """(sample rate, word events [first character, length, first sample], int16 samples) of `text`, spoken
    as plain text (no SSML, no [[phoneme]] input). Raises LookupError for an unknown voice, OSError when
    the library is missing."""
    lib = ctypes.CDLL(ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1")
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, INITIALIZE_DONT_EXIT)
    if rate <= 0:
        raise OSError("espeak_Initialize failed")
    audio: list[bytes] = []
    words: list[list[int]] = []

    def on_audio(wav: ctypes._Pointer[ctypes.c_short], count: int, events: ctypes._Pointer[Event]) -> int:
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            if events[i].type == EVENT_WORD:  # text_position counts characters from 1; sample from 0
                words.append([events[i].text_position - 1, events[i].length, events[i].sample])
            i += 1
        if wav and count > 0:
            audio.append(ctypes.string_at(wav, count * 2))
        return 0

    callback = CALLBACK(on_audio)  # referenced until the end: the library holds only the pointer
    lib.espeak_SetSynthCallback(callback)
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(Voice)]
    # as the binary's -v does: a voice file's name, else the voice of that language ("fr-fr")
    wanted = Voice(languages=voice.encode())
    if (lib.espeak_SetVoiceByName(voice.encode()) != EE_OK
            and lib.espeak_SetVoiceByProperties(ctypes.byref(wanted)) != EE_OK):
        raise LookupError(voice)
    lib.espeak_SetParameter(RATE, wpm, 0)
    data = text.encode("utf-8") + b"\0"
    buf = ctypes.create_string_buffer(data, len(data))
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    if lib.espeak_Synth(buf, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8 | ENDPAUSE, None, None) != EE_OK:
        raise OSError("espeak_Synth failed")
    lib.espeak_Synchronize()
    return rate, words, b"".join(audio)


def main() -> int:
    voice, wpm = sys.argv[1], int(sys.argv[2])
    text = sys.stdin.buffer.read().decode("utf-8")
    try:
        rate, words, samples = speak(text, voice, wpm)
    except LookupError:
        return NO_VOICE
    except (OSError, AttributeError):
        return NO_LIBRARY
    sys.stdout.buffer.write(json.dumps({"rate": rate, "words": words}).encode() + b"\n" + samples)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
