import { z } from 'zod';

/** The response object for the OpenAPI document and for serialising `stream: false` answers. */

const urlCitation = z.object({
  type: z.literal('url_citation'),
  url: z.string(),
  title: z.string(),
  start_index: z.number().int().describe('Code point offset of the cited span in the part\'s text'),
  end_index: z.number().int(),
});

const fileCitation = z.object({
  type: z.literal('file_citation'),
  file_id: z.string(),
  filename: z.string(),
  index: z.number().int().describe("Code point offset in the part's text where the quoted sentence ends"),
});

const outputText = z.object({
  type: z.literal('output_text'),
  text: z.string(),
  annotations: z.array(z.union([urlCitation, fileCitation])),
  logprobs: z.array(z.unknown()),
});

const messageItem = z.object({
  id: z.string(),
  type: z.literal('message'),
  role: z.literal('assistant'),
  status: z.enum(['in_progress', 'completed', 'incomplete']),
  content: z.array(outputText),
});

const functionCallItem = z.object({
  id: z.string(),
  type: z.literal('function_call'),
  call_id: z.string(),
  name: z.string(),
  arguments: z.string().describe('The arguments as the model wrote them, a JSON string'),
  status: z.enum(['in_progress', 'completed', 'incomplete', 'failed']),
  output: z.string().optional().describe("A server tool's result, a JSON string"),
});

const toolCall = functionCallItem.omit({ output: true, type: true });

const usage = z.object({
  input_tokens: z.number().int(),
  input_tokens_details: z.object({ cached_tokens: z.number().int() }),
  output_tokens: z.number().int(),
  output_tokens_details: z.object({ reasoning_tokens: z.number().int() }),
  total_tokens: z.number().int(),
});

export const responseObjectSchema = z
  .object({
    id: z.uuid(),
    object: z.literal('response'),
    created_at: z.number().int().describe('Unix epoch milliseconds'),
    completed_at: z.number().int().nullable().describe('Unix epoch milliseconds'),
    status: z.enum(['in_progress', 'completed', 'failed', 'incomplete']),
    model: z.string().describe('The concrete model that answered'),
    output: z.array(z.discriminatedUnion('type', [messageItem, functionCallItem])),
    output_text: z.string().describe('The text of every message item, concatenated'),
    tool_calls: z.array(toolCall).describe('The tool calls the response made, in order'),
    usage: usage.nullable(),
    conversation_id: z.uuid(),
    conversation: z.object({ id: z.uuid() }),
    project_id: z.uuid().nullable(),
    instructions: z.string().nullable(),
    metadata: z.record(z.string(), z.string()),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    incomplete_details: z.object({ reason: z.string() }).nullable(),
    previous_response_id: z.uuid().nullable(),
    tools: z.array(z.unknown()),
    tool_choice: z.unknown(),
    parallel_tool_calls: z.boolean(),
    temperature: z.number().nullable(),
    top_p: z.number().nullable(),
    max_output_tokens: z.number().int().nullable(),
    sources: z
      .array(
        z.object({
          type: z.literal('file_passage'),
          index: z.number().int().describe('The number the model cites it by, [n]'),
          file_id: z.uuid(),
          filename: z.string(),
          page: z.number().int().nullable(),
          heading: z.string().nullable(),
        }),
      )
      .optional()
      .describe("Only with project_id: the passages of the project's documents the model was given, in the prompt or by file_search"),
  })
  .meta({ id: 'Response' });
