import type { FastifyBaseLogger } from 'fastify';
import type { ChatMessage, FinishReason, ProviderEvent, ToolCall, UpstreamUsage } from '../providers/types.ts';
import { runTool, type ToolRun } from '../tools/run.ts';
import type { Source, ToolName } from '../tools/types.ts';
import { countMessageTokens, countTokens } from '../tokens.ts';
import { describe, type ModelCall } from './attempts.ts';
import type { ResponseBuilder } from './builder.ts';
import { citationsOf, fileCitationsOf } from './citations.ts';
import type { FileTexts } from '../files/prompt.ts';
import type { ProjectSources } from '../projects/sources.ts';
import type { ResponseEvent } from './events.ts';
import { callId, emptyPart, functionCallId, messageId, type Annotation, type FunctionCallItem, type MessageItem } from './object.ts';
import { hasTools, type ResponseTools } from './toolset.ts';

/** What the loop needs to open the next model call (with failover), given what this response has added to the prompt. */
export type NextCall = (step: { messages: ChatMessage[]; tokens: number; withTools: boolean }) => Promise<
  { type: 'started'; call: ModelCall } | { type: 'gone' } | { type: 'failed'; error: unknown } | { type: 'refused'; reason: string }
>;

export interface EngineRun {
  builder: ResponseBuilder;
  /** The text of the input's files, for file_citation annotations. */
  files?: FileTexts | undefined;
  /** The project passages the response was given, for file_citation annotations. */
  sources?: ProjectSources | undefined;
  /** The first model call, already past its first event (the commit point of the response). */
  first: ModelCall;
  next: NextCall;
  tools: ResponseTools;
  maxSteps: number;
  maxToolOutputChars: number;
  /** Aborted when the client leaves or the server stops: tools stop too. */
  signal: AbortSignal;
  /** True when the abort was the client's leaving (the response is then incomplete, not failed). */
  clientGone: () => boolean;
  /** Sent as `response.routing.completed` when the request asked for it. */
  routing?: { model_id: string; category: string; reason: string } | undefined;
  now: () => number;
  log: FastifyBaseLogger;
  /** Hears when the first text delta has been taken by the consumer (written to the stream, or folded into the document). */
  onFirstDelta?: () => void;
}

/** The client-facing words for a failure after the stream started (code upstream_error). */
const UPSTREAM_FAILED = 'the model server failed while answering; the partial answer is kept';

const INCOMPLETE: Partial<Record<FinishReason, string>> = { length: 'max_output_tokens', content_filter: 'content_filter' };

/**
 * An upstream that ignores max_tokens must not grow our memory without end:
 * past this many characters per output token asked for, the answer is cut as if at max_output_tokens.
 */
const MAX_CHARS_PER_TOKEN = 32;

/** Tool calls run per step at most; a model that asks for more gets an error for the rest. */
const MAX_CALLS_PER_STEP = 16;
/** Tool calls one answer may make at all: past this the answer is cut as if at max_output_tokens. */
const MAX_CALLS_MADE = 4 * MAX_CALLS_PER_STEP;
/** What a call costs against the output cap besides its name and arguments. */
const CALL_OVERHEAD_CHARS = 32;

/** A tool call of the current step, as the loop tracks it. */
interface OpenCall {
  item: FunctionCallItem;
  index: number;
  ended: boolean;
}

/**
 * One response as its sequence of events, over the steps of its tool loop:
 * model call → tool calls → tool results → model call, until the model
 * answers without calling a server tool, calls a client's function, or the
 * step cap is reached (the last call is offered no tools, so it must answer).
 * The first call is already committed; a later call that cannot start, or any
 * call that fails mid-answer, ends the stream with the terminal `error`
 * event. A client abort ends the generator without a terminal event. Every
 * event goes through the builder's reducer before it leaves, so the builder
 * holds the response as the client saw it.
 */
const NO_FILES: FileTexts = new Map();

export async function* runResponse(run: EngineRun): AsyncGenerator<ResponseEvent> {
  const b = run.builder;
  let seq = 0;
  let done = false;
  let current: ModelCall | undefined = run.first;
  const emit = (event: ResponseEvent): ResponseEvent => {
    b.apply(event);
    return event;
  };
  const sources: Source[] = [];
  const added: ChatMessage[] = [];
  let addedTokens = 0;
  let deltaSent = false;

  const endIncomplete = (reason: string) => {
    b.incompleteReason = reason;
    b.finish('incomplete', run.now());
  };

  b.model = run.first.model.id;
  try {
    yield emit({ type: 'response.created', sequence_number: seq++, response: b.snapshot() });
    yield emit({ type: 'response.in_progress', sequence_number: seq++, response: b.snapshot() });
    if (run.routing !== undefined) yield emit({ type: 'response.routing.completed', sequence_number: seq++, ...run.routing });

    for (let step = 1; ; step++) {
      const call: ModelCall = current;
      const toolsThisStep = hasTools(run.tools) && step < run.maxSteps;
      b.model = call.model.id;
      b.inFlightPromptTokens = call.promptTokens;
      const maxChars = Math.max(1 << 16, call.maxOutputTokens * MAX_CHARS_PER_TOKEN);
      let message: { item: MessageItem; index: number } | undefined;
      const calls = new Map<number, OpenCall>();
      let stepText = '';
      let produced = 0;
      let usage: UpstreamUsage | undefined;
      let finish: FinishReason | undefined;
      let firstToken: number | undefined;

      const closeMessage = function* (): Generator<ResponseEvent> {
        if (message === undefined) return;
        const { item, index } = message;
        const part = item.content[0]!;
        const at = { item_id: item.id, output_index: index, content_index: 0 };
        const annotations: Annotation[] = [...citationsOf(part.text, sources), ...fileCitationsOf(part.text, run.files ?? NO_FILES), ...(run.sources?.citations(part.text) ?? [])];
        for (const [i, annotation] of annotations.entries()) {
          yield emit({ type: 'response.output_text.annotation.added', sequence_number: seq++, ...at, annotation_index: i, annotation });
        }
        yield emit({ type: 'response.output_text.done', sequence_number: seq++, ...at, text: part.text, logprobs: [] });
        yield emit({ type: 'response.content_part.done', sequence_number: seq++, ...at, part: { ...part, annotations } });
        yield emit({ type: 'response.output_item.done', sequence_number: seq++, output_index: index, item: { ...item, status: 'completed', content: [{ ...part, annotations }] } });
        message = undefined;
      };

      // The events of this call, the first one included; a failure mid-answer ends the response.
      let event: ProviderEvent | undefined = call.first;
      try {
        while (event !== undefined) {
          if (event.type === 'text') {
            if (produced + event.text.length > maxChars) {
              finish = 'length';
              await call.rest.return?.();
              break;
            }
            produced += event.text.length;
            firstToken ??= run.now();
            b.firstTokenAt ??= firstToken;
            if (message === undefined) {
              const item: MessageItem = { id: messageId(), type: 'message', role: 'assistant', status: 'in_progress', content: [] };
              const index = b.output.length;
              yield emit({ type: 'response.output_item.added', sequence_number: seq++, output_index: index, item });
              yield emit({ type: 'response.content_part.added', sequence_number: seq++, item_id: item.id, output_index: index, content_index: 0, part: emptyPart() });
              message = { item: b.output[index] as MessageItem, index };
            }
            stepText += event.text;
            yield emit({ type: 'response.output_text.delta', sequence_number: seq++, item_id: message.item.id, output_index: message.index, content_index: 0, delta: event.text, logprobs: [] });
            if (!deltaSent) {
              deltaSent = true;
              run.onFirstDelta?.();
            }
          } else if (event.type === 'tool_call_start') {
            // Calls count toward the output cap even without arguments, and one answer makes a bounded number of them.
            produced += event.name.length + CALL_OVERHEAD_CHARS;
            if (produced > maxChars || calls.size >= MAX_CALLS_MADE) {
              finish = 'length';
              await call.rest.return?.();
              break;
            }
            firstToken ??= run.now();
            yield* closeMessage();
            const item: FunctionCallItem = { id: functionCallId(), type: 'function_call', call_id: callId(), name: event.name, arguments: '', status: 'in_progress' };
            const index = b.output.length;
            calls.set(event.index, { item, index, ended: false });
            b.stepOf.set(item.id, step);
            yield emit({ type: 'response.output_item.added', sequence_number: seq++, output_index: index, item });
          } else if (event.type === 'tool_call_delta') {
            const open = calls.get(event.index);
            if (open !== undefined && !open.ended) {
              if (produced + event.arguments.length > maxChars) {
                finish = 'length';
                await call.rest.return?.();
                break;
              }
              produced += event.arguments.length;
              open.item.arguments += event.arguments;
              yield emit({ type: 'response.function_call_arguments.delta', sequence_number: seq++, item_id: open.item.id, output_index: open.index, delta: event.arguments });
            }
          } else if (event.type === 'tool_call_end') {
            const open = calls.get(event.index);
            if (open !== undefined && !open.ended) {
              open.ended = true;
              if (open.item.arguments.trim() === '') open.item.arguments = '{}';
              const { item, index } = open;
              yield emit({ type: 'response.function_call_arguments.done', sequence_number: seq++, item_id: item.id, output_index: index, arguments: item.arguments, name: item.name });
            }
          } else if (event.type === 'usage') {
            usage = event.usage;
          } else {
            finish = event.reason;
          }
          const next = await call.rest.next();
          event = next.done === true ? undefined : next.value;
        }
      } catch (err) {
        done = true;
        const used = usage ?? counted(call, stepText, calls);
        b.addUsage(used);
        call.count(used);
        b.inFlightPromptTokens = 0;
        call.end(run.signal.aborted ? { type: 'neutral' } : { type: 'failure', timeout: false });
        if (run.clientGone() || run.signal.aborted) {
          endIncomplete('client_disconnected');
          return;
        }
        run.log.warn({ model: call.model.id, step, error: describe(err) }, 'upstream failed mid-answer');
        b.error = { code: 'upstream_error', message: UPSTREAM_FAILED };
        b.finish('failed', run.now());
        yield errorEvent(seq++);
        return;
      }

      const used = usage ?? counted(call, stepText, calls);
      b.addUsage(used);
      call.count(used);
      b.inFlightPromptTokens = 0;
      call.end({ type: 'success', latencyMs: (firstToken ?? run.now()) - call.startedAt });
      yield* closeMessage();

      const stepCalls = [...calls.values()];
      // A call cut off mid-arguments (by max_output_tokens) cannot run.
      for (const open of stepCalls.filter((c) => !c.ended)) {
        open.ended = true;
        yield emit(itemDone(seq++, open, 'incomplete'));
      }
      if (finish === 'length' || finish === 'content_filter') {
        // A cut answer's calls do not run: their arguments may be cut too.
        for (const open of stepCalls.filter((c) => c.item.status === 'in_progress')) yield emit(itemDone(seq++, open, 'incomplete'));
      }
      const runnable = stepCalls.filter((c) => c.item.status === 'in_progress');
      if (runnable.length === 0) {
        if (!b.output.some((item) => item.type === 'message')) yield* emptyMessage();
        const reason = finish === undefined ? undefined : INCOMPLETE[finish];
        if (reason !== undefined) endIncomplete(reason);
        else b.finish('completed', run.now());
        break;
      }

      // Client functions end the response with their calls; server tools run now.
      const isFunction = (name: string) => toolsThisStep && run.tools.functions.some((f) => f.name === name);
      const clientCalls = runnable.filter((c) => isFunction(c.item.name));
      for (const open of clientCalls) yield emit(itemDone(seq++, open, 'completed'));
      const serverCalls = runnable.filter((c) => !isFunction(c.item.name));
      const results = new Map<OpenCall, ToolRun>();
      for await (const [open, result] of runServerCalls(serverCalls, run, toolsThisStep)) {
        results.set(open, result);
        sources.push(...result.sources);
        yield emit(itemDone(seq++, open, result.status, result.output));
      }
      if (run.signal.aborted) {
        done = true;
        endIncomplete('client_disconnected');
        return;
      }
      if (clientCalls.length > 0) {
        b.finish('completed', run.now());
        break;
      }
      if (!toolsThisStep) {
        // The last step was offered no tools and the model called one anyway: there is no step left to answer in.
        endIncomplete('max_tool_steps');
        break;
      }

      // The step's answer and results join the prompt of the next call.
      const toolCalls: ToolCall[] = serverCalls.map((c) => ({ id: c.item.call_id, name: c.item.name, arguments: c.item.arguments }));
      const stepMessages: ChatMessage[] = [
        { role: 'assistant', content: stepText, toolCalls },
        ...serverCalls.map((c): ChatMessage => ({ role: 'tool', callId: c.item.call_id, content: results.get(c)!.output })),
      ];
      added.push(...stepMessages);
      addedTokens += countMessageTokens(stepMessages);
      const withTools = step + 1 < run.maxSteps;
      let opened: Awaited<ReturnType<NextCall>>;
      try {
        opened = await run.next({ messages: added, tokens: addedTokens, withTools });
      } catch (err) {
        // The database or the prompt failed us between steps: the stream still ends with its terminal event.
        run.log.error({ step: step + 1, error: describe(err) }, 'could not start the next step');
        opened = { type: 'failed', error: err };
      }
      if (opened.type === 'gone') {
        done = true;
        endIncomplete('client_disconnected');
        return;
      }
      if (opened.type === 'refused') {
        endIncomplete(opened.reason);
        break;
      }
      if (opened.type === 'failed') {
        done = true;
        run.log.warn({ step: step + 1 }, 'no model answered the next step');
        b.error = { code: 'upstream_error', message: UPSTREAM_FAILED };
        b.finish('failed', run.now());
        yield errorEvent(seq++);
        return;
      }
      current = opened.call;
    }
    done = true;
    // The docs promise response.completed or error as the last event; a truncated answer says so in status.
    const response = b.snapshot();
    yield { type: 'response.completed', sequence_number: seq++, response, final_text: response.output_text };
  } finally {
    // The consumer stopped early (client gone): stop the upstream too, and record what was made.
    if (!done) {
      await current?.rest.return?.().catch(() => undefined);
      current?.end({ type: 'neutral' });
      if (b.status === 'in_progress') endIncomplete('client_disconnected');
    }
  }

  /** A response whose model said nothing still has one (empty) message, as clients expect. */
  function* emptyMessage(): Generator<ResponseEvent> {
    const item: MessageItem = { id: messageId(), type: 'message', role: 'assistant', status: 'in_progress', content: [] };
    const index = b.output.length;
    const at = { item_id: item.id, output_index: index, content_index: 0 };
    yield emit({ type: 'response.output_item.added', sequence_number: seq++, output_index: index, item });
    yield emit({ type: 'response.content_part.added', sequence_number: seq++, ...at, part: emptyPart() });
    yield emit({ type: 'response.output_text.done', sequence_number: seq++, ...at, text: '', logprobs: [] });
    yield emit({ type: 'response.content_part.done', sequence_number: seq++, ...at, part: emptyPart() });
    yield emit({ type: 'response.output_item.done', sequence_number: seq++, output_index: index, item: { ...item, status: 'completed', content: [emptyPart()] } });
  }
}

function itemDone(seq: number, open: OpenCall, status: FunctionCallItem['status'], output?: string): ResponseEvent {
  const item: FunctionCallItem = { ...open.item, status, ...(output === undefined ? {} : { output }) };
  open.item.status = status;
  return { type: 'response.output_item.done', sequence_number: seq, output_index: open.index, item };
}

/**
 * Runs the step's server tool calls, concurrently unless the request said
 * `parallel_tool_calls: false`, yielding each as it finishes. A call of a
 * tool that is not offered fails with an error the model can read.
 */
async function* runServerCalls(calls: OpenCall[], run: EngineRun, offered: boolean): AsyncGenerator<[OpenCall, ToolRun]> {
  const opts = { signal: run.signal, now: run.now, maxChars: run.maxToolOutputChars, log: run.log };
  const refuse = (open: OpenCall, error: string): [OpenCall, ToolRun] => [open, { status: 'failed', output: JSON.stringify({ error }), sources: [] }];
  const one = async (open: OpenCall): Promise<[OpenCall, ToolRun]> => {
    if (!offered) return refuse(open, 'no tools may be called in this step; answer with what you have');
    if (calls.indexOf(open) >= MAX_CALLS_PER_STEP) return refuse(open, `at most ${MAX_CALLS_PER_STEP} tool calls run per step`);
    const builtin = run.tools.builtins.find((t) => t.tool.name === (open.item.name as ToolName));
    if (builtin === undefined) return refuse(open, `there is no tool named ${open.item.name}`);
    return [open, await runTool(builtin.tool, open.item.arguments, opts)];
  };
  if (!run.tools.parallel) {
    for (const open of calls) yield run.signal.aborted ? refuse(open, 'the request ended before the tool ran') : await one(open);
    return;
  }
  const pending = new Map(calls.map((open) => [open, one(open)]));
  while (pending.size > 0) {
    const [open, result] = await Promise.race(pending.values());
    pending.delete(open);
    yield [open, result];
  }
}

/** Usage of a call whose upstream reported none (a cut stream): the prompt and what it produced, by our count. */
function counted(call: ModelCall, text: string, calls: Map<number, OpenCall>): UpstreamUsage {
  let output = countTokens(text);
  for (const c of calls.values()) output += countTokens(c.item.name) + countTokens(c.item.arguments);
  return { inputTokens: call.promptTokens, outputTokens: output, cachedTokens: 0, reasoningTokens: 0 };
}

function errorEvent(seq: number): ResponseEvent {
  const error = { type: 'upstream_error', code: 'upstream_error', message: UPSTREAM_FAILED, param: null };
  return { type: 'error', sequence_number: seq, code: error.code, message: error.message, param: null, error };
}
