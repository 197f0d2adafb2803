"""`python -m enofctl` and the `enofctl` script. Signals are handled before the heavy imports (torch, timm take
seconds), so a Ctrl-C or SIGTERM at any moment ends with one line and its exit code."""

from __future__ import annotations

from enofctl import signals


def run() -> None:
    signals.install()
    try:
        from enofctl.cli import main
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (signals.Interrupted), during the imports
        signals.exit_interrupted(e)
    if signals.received is not None:  # an interrupt that a library's bare `except:` swallowed while importing
        signals.exit_interrupted(signum=signals.received)
    main()


if __name__ == "__main__":
    run()
