//! The tutor's persona: the system prompt made from `[tutor]` and a session's subject.

use crate::config::{LlmConfig, TutorConfig};

/// The system prompt for a session on `subject`: `[llm] system_prompt` verbatim when set,
/// else one made from the persona.
pub fn system_prompt(llm: &LlmConfig, tutor: &TutorConfig, subject: &str) -> String {
    if !llm.system_prompt.trim().is_empty() {
        return llm.system_prompt.clone();
    }
    format!(
        "You are a {} tutor of {} for a {} student. Answer in {}, in a few short, clear \
         sentences suited to being read aloud.",
        tutor.tone, subject, tutor.level, tutor.language
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persona_makes_the_prompt_unless_one_is_given() {
        let mut llm = LlmConfig::default();
        let tutor = TutorConfig::default();
        assert_eq!(
            system_prompt(&llm, &tutor, "fractions"),
            "You are a patient and encouraging tutor of fractions for a secondary school \
             student. Answer in English, in a few short, clear sentences suited to being read \
             aloud."
        );
        llm.system_prompt = "Be brief.".into();
        assert_eq!(system_prompt(&llm, &tutor, "fractions"), "Be brief.");
    }
}
