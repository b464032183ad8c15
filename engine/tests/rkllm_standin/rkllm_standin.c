/*
 * rkllm_standin.c: a TEST STAND-IN for Rockchip's RKLLM runtime (librkllmrt.so).
 *
 * This is NOT Rockchip's runtime and it runs no model. The real librkllmrt.so is a closed
 * binary shipped for aarch64 only; tutord's tests build this file into a library of the same
 * name that implements the same C ABI (rkllm.h, runtime 1.3.x: structs, callback table,
 * return codes), so that the RKLLM backend's FFI can be exercised on any machine. Its
 * behaviour is the part of the real runtime's that the backend relies on, made
 * deterministic:
 *
 *  - rkllm_init returns -1 unless model_path names a readable file that starts with
 *    "STANDIN-RKLLM" (the real runtime returns -1 for a missing or foreign model), a result
 *    callback is given and n_batch >= 1.
 *  - rkllm_run streams a fixed reply word by word through the result callback, from a thread
 *    of its own (RKLLM_RUN_NORMAL per piece, one RKLLM_RUN_WAITING event without text before
 *    the last piece, as for a split UTF-8 character), then RKLLM_RUN_FINISH with the perf
 *    figures, and returns when the run is over. The reply is
 *        "Hello from the RKLLM stand-in. History: <N> turns. Heard: <prompt>"
 *    where N is the number of earlier turns kept (keep_history) in this handle's "KV cache".
 *  - rkllm_abort (from any thread, or from inside the callback) ends the run after the
 *    current piece; the run still ends with RKLLM_RUN_FINISH.
 *  - The runtime version is a separate string constant printed through the same banner
 *    format string as the real runtime's ("rkllm-runtime version: %s, ..."); build with
 *    -DSTANDIN_VERSION='"1.2.3"' for a runtime of another version, and with
 *    -DSTANDIN_OMIT_RUN for a library that lacks rkllm_run.
 *
 * Prompts containing these words change the run:
 *    __fail_run__     rkllm_run returns -1 without any event (a refused request)
 *    __error_state__  one piece, then an RKLLM_RUN_ERROR event; rkllm_run returns 0
 *    __config__       the reply lists what rkllm_init and this run were given
 *    __slow__         the reply is 200 pieces " tick", 5 ms apart
 *
 * A run whose prompt (counted in words, the stand-in's "tokens"), the turns kept before it and
 * its max_new_tokens would overflow max_context_len is refused (rkllm_run returns -1).
 *
 * Set RKLLM_STANDIN_VERBOSE=1 to have rkllm_init print the banner like the real one does.
 *
 * Build: cc -shared -fPIC -pthread -o librkllmrt.so rkllm_standin.c
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef STANDIN_VERSION
#define STANDIN_VERSION "1.3.0"
#endif

/* ---- the rkllm.h 1.3.x ABI, as this stand-in understands it ---- */

typedef void *LLMHandle;

typedef enum {
    RKLLM_RUN_NORMAL = 0,
    RKLLM_RUN_WAITING = 1,
    RKLLM_RUN_FINISH = 2,
    RKLLM_RUN_ERROR = 3,
} LLMCallState;

typedef enum {
    RKLLM_INPUT_PROMPT = 0,
    RKLLM_INPUT_TOKEN = 1,
    RKLLM_INPUT_EMBED = 2,
    RKLLM_INPUT_MULTIMODAL = 3,
} RKLLMInputType;

typedef enum {
    RKLLM_INFER_GENERATE = 0,
    RKLLM_INFER_GET_LAST_HIDDEN_LAYER = 1,
    RKLLM_INFER_GET_LOGITS = 2,
} RKLLMInferMode;

typedef struct {
    int32_t base_domain_id;
    int8_t embed_flash;
    int8_t enabled_cpus_num;
    uint32_t enabled_cpus_mask;
    uint8_t n_batch;
    int8_t use_cross_attn;
    uint8_t reserved[104];
} RKLLMExtendParam;

typedef struct {
    const char *model_path;
    int32_t max_context_len;
    int32_t max_new_tokens;
    int32_t top_k;
    int32_t n_keep;
    float top_p;
    float temperature;
    float repeat_penalty;
    float frequency_penalty;
    float presence_penalty;
    int32_t mirostat;
    float mirostat_tau;
    float mirostat_eta;
    bool skip_special_token;
    bool ignore_eos_token;
    bool is_async;
    RKLLMExtendParam extend_param;
} RKLLMParam;

typedef struct {
    float *embed;
    size_t n_tokens;
} RKLLMEmbedInput;

typedef struct {
    int32_t *input_ids;
    size_t n_tokens;
} RKLLMTokenInput;

typedef struct {
    char *prompt;
    struct {
        float *image_embed;
        size_t n_image_tokens, n_image;
        const char *image_start, *image_end, *image_content;
        size_t image_width, image_height;
    } image;
    struct {
        float *video_embed;
        size_t n_frame_tokens, n_frame_per_video, n_video;
        const char *video_start, *video_end, *video_content;
        size_t frame_width, frame_height;
    } video;
    struct {
        float *audio_embed;
        size_t n_audio_tokens, n_audio;
        const char *audio_start, *audio_end, *audio_content;
    } audio;
} RKLLMMultiModalInput;

typedef struct {
    const char *role;
    bool enable_thinking;
    RKLLMInputType input_type;
    union {
        const char *prompt_input;
        RKLLMEmbedInput embed_input;
        RKLLMTokenInput token_input;
        RKLLMMultiModalInput multimodal_input;
    };
} RKLLMInput;

typedef struct {
    const char *lora_adapter_name;
} RKLLMLoraParam;

typedef struct {
    int save_prompt_cache;
    const char *prompt_cache_path;
} RKLLMPromptCacheParam;

typedef struct {
    int32_t top_k;
    float top_p;
    float temperature;
    float repeat_penalty;
    float frequency_penalty;
    float presence_penalty;
    int32_t mirostat;
    float mirostat_tau;
    float mirostat_eta;
} RKLLMSamplingParam;

typedef struct {
    RKLLMInferMode mode;
    RKLLMLoraParam *lora_params;
    RKLLMPromptCacheParam *prompt_cache_params;
    RKLLMSamplingParam *sampling_params;
    int keep_history;
    int32_t max_new_tokens;
} RKLLMInferParam;

typedef struct {
    const float *hidden_states;
    int embd_size;
    int num_tokens;
} RKLLMResultLastHiddenLayer;

typedef struct {
    const float *logits;
    int vocab_size;
    int num_tokens;
} RKLLMResultLogits;

typedef struct {
    float prefill_time_ms;
    int prefill_tokens;
    float generate_time_ms;
    int generate_tokens;
    float memory_usage_mb;
} RKLLMPerfStat;

typedef struct {
    const char *text;
    int32_t token_id;
    RKLLMResultLastHiddenLayer last_hidden_layer;
    RKLLMResultLogits logits;
    RKLLMPerfStat perf;
} RKLLMResult;

typedef int (*LLMResultCallback)(RKLLMResult *result, void *userdata, LLMCallState state);
typedef int (*LLMTokenizerCallback)(void *userdata, const char *text, int32_t text_len,
                                    int32_t *tokens, int32_t n_tokens_max);
typedef int (*LLMGetEmbedCallback)(void *userdata, int32_t *tokens, uint64_t num_tokens,
                                   void *embed, uint64_t len);

typedef struct {
    LLMResultCallback result_callback;
    void *result_userdata;
    LLMTokenizerCallback tokenizer_callback;
    void *tokenizer_userdata;
    LLMGetEmbedCallback embed_callback;
    void *embed_userdata;
} RKLLMCallback;

/* ---- the stand-in ---- */

#define MODEL_MAGIC "STANDIN-RKLLM"
#define SLOW_PIECES 200

typedef struct {
    RKLLMParam param; /* as given to rkllm_init; model_path points at our copy */
    char *model_path;
    RKLLMCallback cb;
    atomic_int abort_requested;
    atomic_int running;
    int history_turns; /* turns kept by keep_history, i.e. "in the KV cache" */
    int kv_tokens;
    pthread_t async_thread;
    int async_pending;
    /* the run in progress */
    char *prompt;
    RKLLMInferParam infer;
    RKLLMSamplingParam sampling;
    int has_sampling;
    void *userdata;
    int run_failed; /* the run sent RKLLM_RUN_ERROR */
} standin;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static int count_words(const char *s) {
    int n = 0, in_word = 0;
    for (; *s; s++) {
        if (*s == ' ' || *s == '\n') {
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            n++;
        }
    }
    return n > 0 ? n : 1;
}

RKLLMParam rkllm_createDefaultParam(void) {
    RKLLMParam p;
    memset(&p, 0, sizeof p);
    p.max_context_len = 512;
    p.max_new_tokens = -1;
    p.top_k = 1;
    p.n_keep = -1;
    p.top_p = 0.9f;
    p.temperature = 0.8f;
    p.repeat_penalty = 1.1f;
    p.mirostat_tau = 5.0f;
    p.mirostat_eta = 0.1f;
    p.extend_param.n_batch = 1;
    return p;
}

int rkllm_init(LLMHandle *handle, RKLLMParam *param, RKLLMCallback *callback) {
    if (!handle || !param || !param->model_path || !callback || !callback->result_callback)
        return -1;
    if (param->max_context_len <= 0 || param->extend_param.n_batch < 1)
        return -1;
    FILE *f = fopen(param->model_path, "rb");
    if (!f)
        return -1;
    char magic[sizeof MODEL_MAGIC - 1];
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    if (got != sizeof magic || memcmp(magic, MODEL_MAGIC, sizeof magic) != 0)
        return -1;
    if (getenv("RKLLM_STANDIN_VERBOSE")) {
        fprintf(stderr, "W rkllm: Warning: Your rknpu driver version is too low, please upgrade to %s\n",
                "0.9.7");
        fprintf(stderr, "I rkllm: rkllm-runtime version: %s, rknpu driver version: %s, platform: %s\n",
                STANDIN_VERSION, "stand-in", "stand-in");
    }
    standin *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    s->param = *param;
    s->model_path = strdup(param->model_path);
    s->param.model_path = s->model_path;
    s->cb = *callback;
    *handle = s;
    return 0;
}

/* Sends one event; returns the callback's answer. */
static int emit(standin *s, const char *text, int32_t token_id, LLMCallState state,
                const RKLLMPerfStat *perf) {
    RKLLMResult r;
    memset(&r, 0, sizeof r);
    r.text = text;
    r.token_id = token_id;
    if (perf)
        r.perf = *perf;
    return s->cb.result_callback(&r, s->userdata, state);
}

static char *format_reply(standin *s) {
    char *reply = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&reply, &len);
    if (!out)
        return NULL;
    if (strstr(s->prompt, "__config__")) {
        const RKLLMExtendParam *x = &s->param.extend_param;
        fprintf(out,
                "mask=0x%x num=%d ctx=%d domain=%d n_batch=%d async=%d skip_special=%d "
                "top_k=%d temp=%.2f max_new=%d keep_history=%d",
                x->enabled_cpus_mask, x->enabled_cpus_num, s->param.max_context_len,
                x->base_domain_id, x->n_batch, s->param.is_async, s->param.skip_special_token,
                s->has_sampling ? s->sampling.top_k : s->param.top_k,
                s->has_sampling ? s->sampling.temperature : s->param.temperature,
                s->infer.max_new_tokens, s->infer.keep_history);
    } else if (strstr(s->prompt, "__slow__")) {
        for (int i = 0; i < SLOW_PIECES; i++)
            fputs(i ? " tick" : "tick", out);
    } else {
        fprintf(out, "Hello from the RKLLM stand-in. History: %d turns. Heard: %s",
                s->history_turns, s->prompt);
    }
    fclose(out);
    return reply;
}

static void *generate(void *arg) {
    standin *s = arg;
    double started = now_ms();
    int slow = strstr(s->prompt, "__slow__") != NULL;
    int error_state = strstr(s->prompt, "__error_state__") != NULL;
    int max_new = s->infer.max_new_tokens > 0 ? s->infer.max_new_tokens : s->param.max_new_tokens;
    if (max_new <= 0)
        max_new = 1 << 30;
    char *reply = format_reply(s);
    int produced = 0;
    s->run_failed = 0;
    if (reply) {
        /* Pieces are the reply's words, each but the first with its leading space. */
        size_t n = strlen(reply);
        size_t last_start = 0;
        for (size_t i = 1; i < n; i++)
            if (reply[i] == ' ')
                last_start = i;
        char piece[4096];
        size_t at = 0;
        while (at < n && produced < max_new && !atomic_load(&s->abort_requested)) {
            size_t end = at + 1;
            while (end < n && reply[end] != ' ')
                end++;
            size_t len = end - at < sizeof piece - 1 ? end - at : sizeof piece - 1;
            memcpy(piece, reply + at, len);
            piece[len] = 0;
            if (at == last_start && !slow && !error_state && produced + 1 < max_new) {
                emit(s, NULL, produced, RKLLM_RUN_WAITING, NULL);
                produced++;
            }
            int answer = emit(s, piece, produced, RKLLM_RUN_NORMAL, NULL);
            produced++;
            if (error_state) {
                emit(s, NULL, -1, RKLLM_RUN_ERROR, NULL);
                s->run_failed = 1;
                break;
            }
            if (answer == 1) /* pause: the stand-in just ends the run here */
                break;
            at = end;
            if (slow)
                usleep(5000);
        }
        free(reply);
    }
    if (s->run_failed) {
        /* After an error the run ends without FINISH, and its turn is not kept. */
        atomic_store(&s->running, 0);
        return NULL;
    }
    RKLLMPerfStat perf;
    memset(&perf, 0, sizeof perf);
    perf.prefill_tokens = count_words(s->prompt);
    perf.prefill_time_ms = (float)perf.prefill_tokens;
    perf.generate_tokens = produced > 0 ? produced - 1 : 0;
    perf.generate_time_ms = (float)(now_ms() - started);
    perf.memory_usage_mb = 1.0f;
    emit(s, NULL, -1, RKLLM_RUN_FINISH, &perf);
    if (s->infer.keep_history) {
        s->history_turns++;
        s->kv_tokens += perf.prefill_tokens + produced;
    } else {
        s->history_turns = 0;
        s->kv_tokens = 0;
    }
    atomic_store(&s->running, 0);
    return NULL;
}

static void join_async(standin *s) {
    if (s->async_pending) {
        pthread_join(s->async_thread, NULL);
        s->async_pending = 0;
    }
}

/* Checks and copies a run's arguments; -1 for a request the runtime refuses. */
static int start_run(standin *s, RKLLMInput *input, RKLLMInferParam *infer, void *userdata) {
    join_async(s);
    if (!input || !infer || input->input_type != RKLLM_INPUT_PROMPT || !input->prompt_input)
        return -1;
    if (!input->role || strcmp(input->role, "user") != 0)
        return -1;
    if (infer->mode != RKLLM_INFER_GENERATE)
        return -1;
    if (strstr(input->prompt_input, "__fail_run__"))
        return -1;
    /* The KV cache holds the kept turns, this prompt and at most max_new_tokens more: a run
     * that would not fit in max_context_len is refused. (What the real runtime does past its
     * context is not documented; the backend keeps within it, and this makes a backend that
     * does not fail its tests.) */
    if (s->kv_tokens + count_words(input->prompt_input) + infer->max_new_tokens >
        s->param.max_context_len)
        return -1;
    free(s->prompt);
    s->prompt = strdup(input->prompt_input);
    s->infer = *infer;
    s->has_sampling = infer->sampling_params != NULL;
    if (s->has_sampling)
        s->sampling = *infer->sampling_params;
    s->userdata = userdata ? userdata : s->cb.result_userdata;
    atomic_store(&s->abort_requested, 0);
    atomic_store(&s->running, 1);
    return 0;
}

#ifndef STANDIN_OMIT_RUN
int rkllm_run(LLMHandle handle, RKLLMInput *input, RKLLMInferParam *infer, void *userdata) {
    standin *s = handle;
    if (!s || start_run(s, input, infer, userdata) != 0)
        return -1;
    pthread_t t;
    if (pthread_create(&t, NULL, generate, s) != 0) {
        atomic_store(&s->running, 0);
        return -1;
    }
    pthread_join(t, NULL);
    /* An RKLLM_RUN_ERROR event is the only sign of a failed run: the call itself succeeded. */
    return 0;
}
#endif

int rkllm_run_async(LLMHandle handle, RKLLMInput *input, RKLLMInferParam *infer,
                    void *userdata) {
    standin *s = handle;
    if (!s || start_run(s, input, infer, userdata) != 0)
        return -1;
    if (pthread_create(&s->async_thread, NULL, generate, s) != 0) {
        atomic_store(&s->running, 0);
        return -1;
    }
    s->async_pending = 1;
    return 0;
}

int rkllm_abort(LLMHandle handle) {
    standin *s = handle;
    if (!s)
        return -1;
    atomic_store(&s->abort_requested, 1);
    return 0;
}

int rkllm_is_running(LLMHandle handle) {
    standin *s = handle;
    return s ? atomic_load(&s->running) : 0;
}

int rkllm_clear_kv_cache(LLMHandle handle, int keep_system_prompt, int *start_pos, int *end_pos) {
    (void)keep_system_prompt;
    (void)start_pos;
    (void)end_pos;
    standin *s = handle;
    if (!s || atomic_load(&s->running))
        return -1;
    s->history_turns = 0;
    s->kv_tokens = 0;
    return 0;
}

int rkllm_get_kv_cache_size(LLMHandle handle, int *cache_sizes) {
    standin *s = handle;
    if (!s || !cache_sizes)
        return -1;
    cache_sizes[0] = s->kv_tokens;
    return 0;
}

int rkllm_set_chat_template(LLMHandle handle, const char *system_prompt, const char *prefix,
                            const char *postfix) {
    (void)system_prompt;
    (void)prefix;
    (void)postfix;
    return handle ? 0 : -1;
}

int rkllm_destroy(LLMHandle handle) {
    standin *s = handle;
    if (!s)
        return -1;
    join_async(s);
    free(s->prompt);
    free(s->model_path);
    free(s);
    return 0;
}
