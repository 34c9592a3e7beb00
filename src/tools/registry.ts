import type { ResolvedToolsConfig } from '../config.ts';
import { createCalculatorTool } from './calculator.ts';
import { createCurrentDatetimeTool } from './current-datetime.ts';
import { parametersOf } from './run.ts';
import type { Tool, ToolName } from './types.ts';
import { createWebFetchTool } from './web-fetch.ts';
import { createWebSearchTool, isPaidSearch } from './web-search.ts';

/** A built-in tool as the server runs it: with the JSON Schema the model is shown, and whether a paid backend is behind it. */
export interface BuiltinTool {
  tool: Tool;
  parameters: Record<string, unknown>;
  /** Needs the plan feature `advanced_web_search`. */
  paid: boolean;
}

/** The built-in tools this deployment runs (those enabled in the config), made once at start. */
export interface Toolbox {
  get(name: ToolName): BuiltinTool | undefined;
  enabled(): BuiltinTool[];
  maxSteps: number;
  maxOutputChars: number;
  close(): Promise<void>;
}

/** Most built-ins hold something to let go of at shutdown: worker processes, connection pools. */
type Closable = Tool & { close?: () => Promise<void> };

export interface ToolboxOptions {
  /** Replaces DNS for web_fetch (tests map names to loopback). */
  lookup?: (hostname: string) => Promise<{ address: string; family: 4 | 6 }[]>;
}

export function createToolbox(config: ResolvedToolsConfig, options: ToolboxOptions = {}): Toolbox {
  const made: { tool: Closable; paid: boolean }[] = [];
  if (config.web_search.enabled) made.push({ tool: createWebSearchTool(config.web_search), paid: isPaidSearch(config.web_search) });
  if (config.web_fetch.enabled) made.push({ tool: createWebFetchTool(config.web_fetch, options.lookup ? { lookup: options.lookup } : undefined), paid: false });
  if (config.calculator.enabled) made.push({ tool: createCalculatorTool(config.calculator), paid: false });
  if (config.current_datetime.enabled) made.push({ tool: createCurrentDatetimeTool(config.current_datetime), paid: false });
  const byName = new Map<ToolName, BuiltinTool>(made.map(({ tool, paid }) => [tool.name, { tool, parameters: parametersOf(tool), paid }]));
  return {
    get: (name) => byName.get(name),
    enabled: () => [...byName.values()],
    maxSteps: config.max_steps,
    maxOutputChars: config.max_output_chars,
    async close() {
      await Promise.all(made.map(async ({ tool }) => tool.close?.()));
    },
  };
}
