"""Tests of ``wscompat conform`` (``wscompat.conformance``): its whole catalogue against
wscompat, its judging, its codecs and reports, and the command itself in a subprocess
against real servers, with its HTML report opened in headless Chromium."""
