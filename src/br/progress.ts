// Progress of a backup or restore: a bar on a terminal, plain lines (at most one per interval,
// plus the last) when the output is a file or a pipe, nothing for library callers (the drill).
import cliProgress from 'cli-progress';

export interface ProgressReporter {
  /** A phase with this many files and bytes to go through. */
  begin(label: string, totalFiles: number, totalBytes: number): void;
  /** One file done: `copiedBytes` were written (0 when it was already there, or lives in a base backup). */
  advance(sizeBytes: number, copiedBytes: number): void;
  /** A line of commentary (what is being flushed, resumed, skipped). */
  note(line: string): void;
  end(): void;
}

export const silentProgress: ProgressReporter = {
  begin: () => undefined,
  advance: () => undefined,
  note: () => undefined,
  end: () => undefined,
};

const PLAIN_INTERVAL_MS = 1000;

export function mib(bytes: number): string {
  return (bytes / (1 << 20)).toFixed(1);
}

/** Reports on `stream` (stderr by default, so stdout carries only the result). */
export function consoleProgress(stream: NodeJS.WriteStream = process.stderr): ProgressReporter {
  let label = '';
  let totalFiles = 0;
  let totalBytes = 0;
  let files = 0;
  let bytes = 0;
  let copied = 0;
  let lastLineMs = 0;
  let bar: cliProgress.SingleBar | undefined;
  // Verify copies nothing: say "copied" only when something was.
  const copiedNote = () => (copied > 0 ? ` (${mib(copied)} MiB copied)` : '');
  const payload = () => ({ label, files, totalFiles, mib: mib(bytes), totalMib: mib(totalBytes), copiedNote: copiedNote() });
  const line = () => `${label}: ${files}/${totalFiles} files, ${mib(bytes)}/${mib(totalBytes)} MiB${copiedNote()}\n`;
  const startBar = () => {
    bar = new cliProgress.SingleBar(
      { stream, format: '{label} [{bar}] {percentage}% | {files}/{totalFiles} files | {mib}/{totalMib} MiB{copiedNote} | ETA {eta_formatted}', hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    bar.start(Math.max(1, totalBytes), bytes, payload());
  };
  return {
    begin(l, f, b) {
      label = l;
      totalFiles = f;
      totalBytes = b;
      files = bytes = copied = 0;
      if (stream.isTTY) {
        startBar();
      } else {
        stream.write(line());
        lastLineMs = Date.now();
      }
    },
    advance(sizeBytes, copiedBytes) {
      files++;
      bytes += sizeBytes;
      copied += copiedBytes;
      if (bar) {
        bar.update(bytes, payload());
      } else if (files === totalFiles || Date.now() - lastLineMs >= PLAIN_INTERVAL_MS) {
        stream.write(line());
        lastLineMs = Date.now();
      }
    },
    note(text) {
      const hadBar = bar !== undefined;
      bar?.stop();
      stream.write(`${text}\n`);
      if (hadBar) startBar();
    },
    end() {
      bar?.stop();
      bar = undefined;
    },
  };
}
