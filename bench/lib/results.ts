import fs from 'node:fs';
import path from 'node:path';
import type { HttpPoint } from '../http.ts';
import type { LoginBenchResult } from '../login.ts';
import type { ProfileSummary } from './cpu-profile.ts';
import { RESULTS_DIR, type BenchSettings, type MachineInfo } from './environment.ts';

export interface PartMeta {
  readonly machine: MachineInfo;
  readonly database: { readonly kind: string; readonly serverVersion: string };
  readonly settings: BenchSettings;
  readonly finishedAt: string;
  readonly loadAverageAtEnd: readonly number[];
}

export interface HttpPart extends PartMeta {
  readonly findById: readonly HttpPoint[];
  readonly scenarios: readonly HttpPoint[];
  readonly knee: number | undefined;
  /** The app at a fixed rate of half the knee's throughput: pool utilisation below saturation. */
  readonly halfKnee?: HttpPoint;
  /** Where the app's time goes at the knee (see runAblation). */
  readonly ablation?: readonly HttpPoint[];
  /** Servers that died during the run and were restarted (the affected run was repeated). */
  readonly incidents?: readonly string[];
  readonly profile?: ProfileSummary;
}

export interface LoginPart extends PartMeta {
  readonly login: LoginBenchResult;
  readonly profile?: ProfileSummary;
}

/** The latest result of each part; a part run on its own replaces only its own entry. */
export interface Results {
  http?: HttpPart;
  login?: LoginPart;
}

export const RESULTS_FILE = path.join(RESULTS_DIR, 'results.json');

export function readResults(): Results {
  try {
    return JSON.parse(fs.readFileSync(RESULTS_FILE, 'utf8')) as Results;
  } catch {
    return {};
  }
}

export function writeResults(results: Results): void {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  fs.writeFileSync(
    RESULTS_FILE,
    `${JSON.stringify(results, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? null : value), 2)}\n`,
  );
}
